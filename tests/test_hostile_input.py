"""Text and output from outside never break a conversation: each case ends normally or in a typed
error, the history passes the invariant checker, and the next turn works."""

from __future__ import annotations

import asyncio

import pytest

from agent import Agent, tool
from agent.backends import ScriptedBackend, call, final
from agent.backends.base import CompletionRequest, Usage, shared_prefix
from agent.backends.ollama import OllamaBackend
from agent.errors import BackendError, CompletionCutError, ContextOverflowError
from agent.events import ToolCallEvent
from agent.harmony.encoding import get_encoding
from tools.text import MAX_MESSAGE_CHARS, MAX_RUN_CHARS
from fake_ollama import Completion, FakeOllama, call_text, final_text, respx_ollama
from realformat import assert_history_ok
from tools.base import DEFAULT_TOOL_TIMEOUT


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def make(script, tools=(add,), **kwargs) -> tuple[Agent, ScriptedBackend]:
    backend = ScriptedBackend(
        script, **{k: kwargs.pop(k) for k in ("context_window", "max_completion_tokens") if k in kwargs}
    )
    return Agent(backend=backend, tools=list(tools), date="2026-01-15", **kwargs), backend


def next_turn_works(agent: Agent, backend: ScriptedBackend) -> None:
    assert_history_ok(agent)
    backend.add(final("Still here."))
    assert agent.run("Are you still there?").output == "Still here."
    assert_history_ok(agent)


# -- broken Unicode ---------------------------------------------------------------


def test_a_lone_surrogate_in_the_prompt_becomes_a_replacement_character():
    agent, backend = make([final("ok")])
    assert agent.run("bad byte: \udcff and \ud800 here").output == "ok"
    assert "bad byte: \ufffd and \ufffd here" in backend.prompt_texts[0]
    next_turn_works(agent, backend)


def test_a_tool_error_holding_a_lone_surrogate_reaches_the_model_readably():
    @tool
    def broken() -> str:
        """Raises with a lone surrogate in its message, as sandbox code can."""
        raise ValueError(chr(0xD800))

    agent, backend = make([call("functions.broken", {}), final("ok")], tools=[broken])
    result = agent.run("go")
    assert result.tool_calls[0].output == "functions.broken failed: ValueError: \ufffd"
    next_turn_works(agent, backend)


def test_tool_output_with_lone_surrogates_is_made_valid():
    @tool
    def page() -> str:
        """Returns text decoded with surrogateescape."""
        return b"caf\xe9 \xff".decode("utf-8", "surrogateescape")

    agent, backend = make([call("functions.page", {}), final("ok")], tools=[page])
    agent.run("go")
    assert "caf\ufffd \ufffd" in backend.prompt_texts[1]
    next_turn_works(agent, backend)


# -- size ---------------------------------------------------------------------------


def test_a_prompt_over_the_size_bound_is_refused_before_tokenising():
    agent, backend = make([])
    with pytest.raises(ContextOverflowError, match="characters; at most 500,000 fit in one message"):
        agent.run("x" * 1_000_000)
    assert backend.prompts == [] and agent.history == []
    next_turn_works(agent, backend)


def test_one_enormous_word_is_broken_into_runs_the_tokeniser_handles():
    agent, backend = make([final("ok")], context_window=10**6)
    agent.run("a" * 250_000)
    text = backend.prompt_texts[0]
    assert "a" * MAX_RUN_CHARS + " " + "a" in text and "a" * (MAX_RUN_CHARS + 1) not in text
    next_turn_works(agent, backend)


def test_tool_output_is_bounded_even_when_the_tool_allows_more():
    @tool(max_output_chars=10**9)
    def flood() -> str:
        """Returns a lot."""
        return "word " * 300_000

    agent, backend = make([call("functions.flood", {}), final("ok")], tools=[flood], context_window=10**6)
    result = agent.run("go")
    assert len(result.tool_calls[0].output) < MAX_MESSAGE_CHARS + 100
    assert "[output truncated:" in result.tool_calls[0].output
    next_turn_works(agent, backend)


# -- cut completions ------------------------------------------------------------------


def test_a_call_cut_by_the_budget_is_never_executed():
    ran = []

    @tool
    def run_code(code: str) -> str:
        """Runs code."""
        ran.append(code)
        return "done"

    long_code = {"code": "x = 1\n" * 200 + "delete_everything()"}
    agent, backend = make(
        [call("functions.run_code", long_code), final("short answer")], tools=[run_code], max_completion_tokens=60
    )
    result = agent.run("go")
    assert ran == []
    assert [s.outcome for s in result.steps] == ["retry", "final"]
    assert "cut" in (result.steps[0].error or "")
    next_turn_works(agent, backend)


def test_a_final_answer_cut_mid_sentence_is_not_returned():
    agent, backend = make(
        [final("This sentence is far too long to fit " * 10), final("Short.")], max_completion_tokens=20
    )
    result = agent.run("go")
    assert result.output == "Short."
    next_turn_works(agent, backend)


def test_completions_cut_every_time_end_in_a_typed_error_naming_the_budget():
    long = final("word " * 100)
    agent, backend = make([long, long, long], max_completion_tokens=15, output_retries=2)
    with pytest.raises(
        CompletionCutError, match=r"cut at the completion budget \(at most 15 tokens\).*raise max_completion_tokens"
    ):
        agent.run("go")
    next_turn_works(agent, backend)


def test_ollama_done_reason_length_is_a_cut_completion():
    ran = []

    @tool
    def record(text: str) -> str:
        """Records."""
        ran.append(text)
        return "ok"

    fake = FakeOllama(
        [
            Completion(call_text("record", '{"text": "half"}'), done_reason="length"),
            Completion(final_text("Half a sen"), done_reason="length"),
            final_text("Whole answer."),
        ]
    )
    with respx_ollama(fake):
        agent = Agent(backend=OllamaBackend(host="http://127.0.0.1:11434"), tools=[record], date="2026-01-15")
        result = agent.run("go")
    assert ran == [] and result.output == "Whole answer."
    assert [s.outcome for s in result.steps] == ["retry", "retry", "final"]
    assert_history_ok(agent)


# -- the retry prompt ----------------------------------------------------------------


def test_the_retry_after_an_empty_reading_sends_the_same_prompt():
    agent, backend = make(["<|channel|>comm", final("ok")])
    agent.run("go")
    assert backend.prompts[1] == backend.prompts[0]
    assert not backend.prompt_texts[1].endswith("<|start|>assistant<|start|>assistant")
    next_turn_works(agent, backend)


def test_text_the_model_invents_after_a_call_never_reaches_the_next_prompt():
    raw = (
        '<|channel|>commentary to=functions.add <|constrain|>json<|message|>{"a": 1, "b": 2}<|end|>'
        "<|start|>assistant<|message|>The weather is sunny"
    )
    agent, backend = make([raw, final("3")])
    agent.run("go")
    first, second = backend.prompts[0], backend.prompts[1]
    assert shared_prefix(first, second) == len(first)  # the chain extends the prompt token for token
    added = get_encoding().decode(second[len(first) :])
    assert added.startswith(
        '<|channel|>commentary to=functions.add <|constrain|>json<|message|>{"a": 1, "b": 2}<|call|>'
    )
    assert "sunny" not in backend.prompt_texts[1]
    next_turn_works(agent, backend)


# -- tools ------------------------------------------------------------------------------


def test_tools_have_a_default_timeout_that_none_turns_off():
    @tool(timeout=None)
    def unbounded() -> str:
        """No limit."""
        return ""

    assert add.timeout == DEFAULT_TOOL_TIMEOUT == 120.0 and unbounded.timeout is None


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()], ids=lambda e: type(e).__name__)
def test_a_sync_tool_raising_a_base_exception_is_a_tool_error(exc):
    @tool
    def bad() -> str:
        """Raises something that is not an Exception."""
        raise exc

    agent, backend = make([call("functions.bad", {}), final("ok")], tools=[bad])
    result = agent.run("go")
    assert result.output == "ok"
    assert result.tool_calls[0].output.startswith(f"functions.bad failed: it raised {type(exc).__name__}")
    next_turn_works(agent, backend)


@pytest.mark.parametrize("exc", [SystemExit(2), asyncio.CancelledError()], ids=lambda e: type(e).__name__)
def test_an_async_tool_raising_a_base_exception_is_a_tool_error(exc):
    @tool
    async def bad() -> str:
        """Raises something that is not an Exception."""
        raise exc

    agent, backend = make([call("functions.bad", {}), final("ok")], tools=[bad])
    result = agent.run("go")
    assert result.output == "ok" and result.tool_calls[0].error
    assert "functions.bad failed" in result.tool_calls[0].output
    next_turn_works(agent, backend)


def test_cancelling_during_a_tool_leaves_the_call_answered():
    started = asyncio.Event()

    @tool(timeout=None)
    async def forever() -> str:
        """Never returns."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    agent, backend = make([call("functions.forever", {})], tools=[forever])

    async def scenario() -> None:
        async def consume() -> None:
            async for event in agent.astream("go"):
                if isinstance(event, ToolCallEvent):
                    pass

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    call_message, reply = agent.history[-2], agent.history[-1]
    assert call_message.recipient == "functions.forever"
    assert reply.author.name == "functions.forever" and "did not finish" in reply.content[0].text
    next_turn_works(agent, backend)


# -- servers sending nonsense ---------------------------------------------------------------


class IdsBackend:
    """Sends fixed token ids, whatever it is asked."""

    context_window = 131_072
    max_completion_tokens = 4096

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    async def stream(self, request: CompletionRequest):
        yield self.ids
        yield Usage(prompt_tokens=len(request.prompt), completion_tokens=len(self.ids))

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("bad_id", [300_000, -1, 10**9])
def test_a_token_id_outside_the_vocabulary_is_a_backend_error(bad_id):
    good = get_encoding().encode("<|channel|>final<|message|>hi", allowed_special="all")
    backend = IdsBackend(good[:2] + [bad_id])
    agent = Agent(backend=backend, date="2026-01-15")
    with pytest.raises(BackendError, match=f"token id {bad_id}, which the Harmony vocabulary does not have"):
        agent.run("go")
    assert_history_ok(agent)
    backend.ids = good
    assert agent.run("again").output == "hi"
    assert_history_ok(agent)
