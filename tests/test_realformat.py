"""Every collected gpt-oss completion is read as its source project reads it, and leaves a healthy history.

Each case runs through `ScriptedBackend` (token ids, stop tokens included) and
through the Ollama backend against the fake server (text with the stop tokens
left out, as raw mode streams it); after each, the history passes the invariant
checker, takes a second user turn, and passes it again.
"""

from __future__ import annotations

import pytest
from fake_ollama import FakeOllama, final_text, respx_ollama
from realformat import assert_history_ok, assert_prompts_strict, case_tools, cases, check_reading, passes

from agent import Agent
from agent.backends import ScriptedBackend, final
from agent.backends.ollama import OllamaBackend

CASES = {case["id"]: case for case in cases()}
CLOSING = "Closing answer."


def closing(case, item):
    """After a completion that does not answer, the model's next pass answers."""
    return [] if case["expected"]["kind"] == "final" else [item]


def test_the_corpus_is_the_collected_one():
    assert len(CASES) == 78
    assert sum(c["corpus"] == "corpus-2.json" for c in CASES.values()) == 35
    kinds = {c["expected"]["kind"] for c in CASES.values()}
    assert kinds == {"final", "tool_call", "reasoning_only", "no_call", "error"}
    assert all(c["source"].get("repo") for c in CASES.values())


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_scripted(case_id):
    case = CASES[case_id]
    tools, calls = case_tools(case)
    backend = ScriptedBackend([*passes(case), *closing(case, final(CLOSING))])
    agent = Agent(backend=backend, tools=tools, date="2026-01-15")
    result = agent.run("Go.")
    check_reading(case, agent, result, calls, CLOSING)
    backend.assert_complete()
    backend.add(final("Second answer."))
    assert agent.run("And now?").output == "Second answer."
    assert_history_ok(agent)
    assert_prompts_strict(backend.prompts)  # every prompt sent, the next turn's included, is valid Harmony


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_through_ollama(case_id):
    case = CASES[case_id]
    tools, calls = case_tools(case)
    from agent.harmony.encoding import get_encoding

    texts = [get_encoding().decode(p) for p in passes(case)]
    fake = FakeOllama([*texts, *closing(case, final_text(CLOSING))])
    with respx_ollama(fake):
        agent = Agent(backend=OllamaBackend(host="http://127.0.0.1:11434"), tools=tools, date="2026-01-15")
        result = agent.run("Go.")
        check_reading(case, agent, result, calls, CLOSING)
        assert fake.remaining == 0
        fake.add(final_text("Second answer."))
        assert agent.run("And now?").output == "Second answer."
        assert_history_ok(agent)
    for request in fake.generate_requests:
        assert request["raw"] is True
    assert_prompts_strict([get_encoding().encode(r["prompt"], allowed_special="all") for r in fake.generate_requests])


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_recorded_and_exported_for_fine_tuning(case_id, tmp_path):
    """Each real completion, saved as a session and exported: every request of both turns is a prefix of the
    turn's example, labels fall only on what the model wrote and the loop kept, and the chat form renders back."""
    import io
    import itertools
    import json

    from agent.harmony.encoding import get_encoding
    from agent.sessions import SessionRecorder, SessionStore
    from agent.training import export_sft
    from agent.training.chat_format import from_chat
    from agent.training.examples import IGNORE, render_example

    enc = get_encoding()
    case = CASES[case_id]
    tools, _ = case_tools(case)
    items = [*passes(case), *closing(case, final(CLOSING)), final("Second answer.")]
    backend = ScriptedBackend(items)
    agent = Agent(backend=backend, tools=tools, date="2026-01-15")
    store = SessionStore(tmp_path / "sessions.db")
    recorder = SessionRecorder(store, agent)
    turns = []
    for prompt in ("Go.", "And now?"):
        before = len(backend.prompts)
        recorder.begin_turn(prompt)
        for event in agent.stream(prompt):
            recorder.record(event)
        turns.append(range(before, len(backend.prompts)))
    store_out = io.StringIO()
    export_sft(store, [recorder.session_id], out=store_out, near_duplicates=None)
    store.close()
    rows = [json.loads(line) for line in store_out.getvalue().splitlines()]
    assert len(rows) == 2
    for row, steps in zip(rows, turns, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        assert row["meta"]["prompt_tokens"] == len(backend.prompts[steps[0]])
        for step in steps:
            prompt = backend.prompts[step]
            assert ids[: len(prompt)] == prompt, (case_id, step)
        # between one request and the next: the kept part of the model's pass (labelled), then what the loop
        # wrote (a tool result and a new header, or a header alone), never labelled; a pass with nothing usable
        # is sampled again from the same prompt
        for step, following in itertools.pairwise(steps):
            start, stop = len(backend.prompts[step]), len(backend.prompts[following])
            marks = [labels[i] != IGNORE for i in range(start, stop)]
            kept = marks.index(False) if False in marks else len(marks)
            assert not any(marks[kept:]), (case_id, step)
            written = enc.decode(ids[start + kept : stop])
            assert (
                written == "<|start|>assistant"
                or (kept == 0 and written == "")
                or (
                    written.startswith("<|start|>")
                    and " to=assistant<|channel|>" in written
                    and written.endswith("<|end|><|start|>assistant")
                )
            ), (case_id, written)
        answer_from = len(backend.prompts[steps[-1]])
        assert all(label != IGNORE for label in labels[answer_from:])  # the answering pass, in full
        assert all(label in (IGNORE, token) for label, token in zip(labels, ids, strict=True))
        assert render_example(*from_chat(json.loads(json.dumps(row))))[0] == ids  # the chat form: the same ids
