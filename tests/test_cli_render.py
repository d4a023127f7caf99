"""The renderer on its own: citations as links, streams kept apart, the footer."""

from __future__ import annotations

import io

from rich.console import Console

from agent.backends.base import Usage
from agent.cli.render import TurnRenderer
from agent.events import ReasoningDelta, RunFinished, RunResult, TextDelta


def renderer(**kwargs):
    out, err = io.StringIO(), io.StringIO()
    r = TurnRenderer(Console(file=out, width=100), Console(file=err, width=100), **kwargs)
    return r, out, err


def test_citations_become_links_even_when_split_across_deltas():
    def cite(text: str) -> str:
        return text.replace("【0†L1-L2】", " ([example.com](https://example.com))")

    r, out, _ = renderer(cite=cite)
    for piece in ["Paris is sunny", "【0", "†L1", "-L2】", " today."]:
        r.handle(TextDelta(piece, step=1))
    r.handle(RunFinished(RunResult(output="")))
    assert out.getvalue() == "Paris is sunny ([example.com](https://example.com)) today.\n"


def test_reasoning_goes_to_stderr_and_the_answer_to_stdout():
    r, out, err = renderer(show_reasoning=True)
    r.handle(ReasoningDelta("thinking hard", step=1))
    r.handle(TextDelta("answer", step=1))
    r.handle(RunFinished(RunResult(output="answer", usage=Usage(10, 0, 5, 0.1, 0.5, 0.6))))
    assert out.getvalue() == "answer\n"
    assert "thinking hard" in err.getvalue() and "15 tokens (10 in, 5 out)" in err.getvalue()
    assert "10.0 tok/s" in err.getvalue()


def test_hidden_reasoning_is_summarised_and_kept_for_later():
    r, _, err = renderer(show_reasoning=False)
    r.handle(ReasoningDelta("secret plan", step=1))
    r.handle(TextDelta("ok", step=1))
    assert "secret plan" not in err.getvalue() and "reasoning hidden, 11 characters" in err.getvalue()
    assert r.last_reasoning == "secret plan"


def test_a_resampled_step_is_one_note_on_stderr():
    from agent.events import StepFinished

    r, out, err = renderer()
    r.handle(
        StepFinished(
            step=1,
            outcome="retry",
            usage=Usage(),
            prompt_tokens=10,
            shared_prefix_tokens=0,
            duration_s=0.1,
            backend_s=0.1,
            overhead_s=0.0,
            error="the completion was cut at the token budget or the context window",
        )
    )
    r.handle(TextDelta("fine", step=2))
    r.handle(RunFinished(RunResult(output="fine")))
    assert out.getvalue() == "fine\n"
    assert "note: the completion was cut at the token budget or the context window; sampling again" in err.getvalue()


def test_a_preamble_that_turns_out_to_be_the_answer_is_shown_once_on_a_terminal():
    from agent.events import PreambleDelta

    out, err = io.StringIO(), io.StringIO()
    r = TurnRenderer(
        Console(file=out, width=100, force_terminal=True), Console(file=err, width=100, force_terminal=True)
    )
    r.handle(PreambleDelta("Done, see above.", step=1))
    r.handle(TextDelta("Done, see above.", step=1))
    r.handle(RunFinished(RunResult(output="Done, see above.")))
    assert (out.getvalue() + err.getvalue()).count("Done, see above.") == 1


def test_a_tool_panel_leaves_out_the_approval_wait_and_says_declined(monkeypatch):
    import asyncio

    from agent.cli import runner as runner_module
    from agent.cli.runner import Approvals
    from agent.events import ToolResultEvent
    from tools.base import ToolCall

    clock = [100.0]
    monkeypatch.setattr(runner_module.time, "perf_counter", lambda: clock[0])
    answers = ["y", "n"]

    async def ask(question: str) -> str:
        clock[0] += 7.5  # the user takes their time
        return answers.pop(0)

    approvals = Approvals(False, ask)
    first = ToolCall("functions.delete_file", "delete_file", None, '{"path": "a"}', "commentary")
    second = ToolCall("functions.delete_file", "delete_file", None, '{"path": "b"}', "commentary")
    assert asyncio.run(approvals(first)) is True and asyncio.run(approvals(second)) is False
    r, _, err = renderer()
    r.approval_of = approvals.outcome
    r.handle(ToolResultEvent(first, "deleted a", 1, None, duration_s=7.75))
    r.handle(ToolResultEvent(second, "the user declined to run functions.delete_file", 1, None, duration_s=7.5))
    panels = err.getvalue()
    assert "done in 0.2 s" in panels and "done in 7" not in panels
    assert panels.count("declined ─") == 1  # the second panel's subtitle
    assert approvals.outcome(first) == (0.0, False)  # read once
