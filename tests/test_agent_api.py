"""The public API: run, arun, stream, astream, approval, async tools, reset, ScriptedBackend."""

from __future__ import annotations

import asyncio

import pytest

import agent as agent_pkg
from agent import Agent, RunResult, tool
from agent.backends import ScriptedBackend, call, final, preamble
from agent.errors import BackendError, ConfigurationError
from agent.events import (
    MessageEvent,
    PreambleDelta,
    ReasoningDelta,
    RunFinished,
    StepFinished,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
)


@tool
async def lookup(key: str) -> str:
    """Look a key up (async tool)."""
    await asyncio.sleep(0)
    return f"value-of-{key}"


@tool(requires_approval=True)
def delete_file(path: str) -> str:
    """Delete a file (needs approval)."""
    return f"deleted {path}"


def script():
    return [
        [preamble("Let me look that up."), *call("functions.lookup", {"key": "k1"}, reasoning="Think first.")],
        final("The value is value-of-k1.", reasoning="Got it."),
    ]


def test_tool_is_reexported_from_agent():
    assert agent_pkg.tool is tool


def test_run_result_carries_messages_calls_and_usage():
    backend = ScriptedBackend(script())
    result = Agent(backend=backend, tools=[lookup]).run("What is k1?")
    assert isinstance(result, RunResult)
    assert result.output == "The value is value-of-k1."
    assert [r.output for r in result.tool_calls] == ["value-of-k1"]
    assert result.messages[0].author.role.value == "user"
    assert [m.channel for m in result.messages[1:]] == [
        "commentary",
        "analysis",
        "commentary",
        "commentary",
        "analysis",
        "final",
    ]
    assert result.usage.prompt_tokens == sum(len(p) for p in backend.prompts)
    assert result.usage.completion_tokens > 0 and len(result.steps) == 2


def test_stream_yields_typed_events_in_order():
    events = list(Agent(backend=ScriptedBackend(script()), tools=[lookup]).stream("What is k1?"))
    kinds = [type(e) for e in events]
    assert kinds[0] is MessageEvent and kinds[-1] is RunFinished
    text = lambda cls: "".join(e.text for e in events if isinstance(e, cls))
    assert text(PreambleDelta) == "Let me look that up."
    assert text(ReasoningDelta) == "Think first.Got it."
    assert text(TextDelta) == "The value is value-of-k1."
    call_i = kinds.index(ToolCallEvent)
    result_i = kinds.index(ToolResultEvent)
    assert call_i < result_i < kinds.index(StepFinished)
    assert events[call_i].call.recipient == "functions.lookup" and events[call_i].call.arguments == '{"key": "k1"}'


def test_arun_and_astream_share_the_loop():
    async def main():
        a = Agent(backend=ScriptedBackend(script() + [final("second")]), tools=[lookup])
        first = await a.arun("What is k1?")
        events = [e async for e in a.astream("again")]
        return first, events

    first, events = asyncio.run(main())
    assert first.output == "The value is value-of-k1."
    assert events[-1].result.output == "second"


def test_run_inside_an_event_loop_points_to_arun():
    async def main():
        Agent(backend=ScriptedBackend([final("x")])).run("hi")

    with pytest.raises(ConfigurationError, match="use arun"):
        asyncio.run(main())


@pytest.mark.parametrize("answer", [True, False])
def test_approval_callback(answer):
    asked = []

    def approve(call):
        asked.append(call.recipient)
        return answer

    backend = ScriptedBackend([call("functions.delete_file", {"path": "/tmp/x"}), final("ok")])
    result = Agent(backend=backend, tools=[delete_file], approve=approve).run("delete it")
    assert asked == ["functions.delete_file"]
    output = result.tool_calls[0].output
    assert output == "deleted /tmp/x" if answer else output.startswith("the user declined to run functions.delete_file")


def test_async_approval_and_no_approver_declines():
    async def approve(call):
        return True

    backend = ScriptedBackend([call("functions.delete_file", {"path": "a"}), final("ok")])
    assert Agent(backend=backend, tools=[delete_file], approve=approve).run("x").tool_calls[0].output == "deleted a"
    backend = ScriptedBackend([call("functions.delete_file", {"path": "a"}), final("ok")])
    assert "declined" in Agent(backend=backend, tools=[delete_file]).run("x").tool_calls[0].output


def test_successive_runs_continue_and_reset_starts_over():
    backend = ScriptedBackend([final("one"), final("two"), final("three")])
    a = Agent(backend=backend)
    a.run("first")
    a.run("second")
    assert "first" in backend.prompt_texts[1] and "one" in backend.prompt_texts[1]
    a.reset()
    a.run("third")
    assert "first" not in backend.prompt_texts[2] and a.history[0].content[0].text == "third"


def test_scripted_backend_records_and_checks_its_script():
    backend = ScriptedBackend([final("a"), final("b")], chunk_size=4)
    Agent(backend=backend).run("hi")
    with pytest.raises(AssertionError, match="1 scripted completion"):
        backend.assert_complete()
    assert backend.prompt_texts[0].endswith("<|start|>user<|message|>hi<|end|><|start|>assistant")
    Agent(backend=backend).run("again")
    backend.assert_complete()
    with pytest.raises(BackendError, match="the script ran out after 2"):
        Agent(backend=backend).run("more")


def test_model_and_backend_are_exclusive():
    with pytest.raises(ConfigurationError, match="either backend= or model="):
        Agent(backend=ScriptedBackend(), model="gpt-oss:20b")


def test_context_manager_closes_tools():
    closed = []

    class Probe(type(lookup)):
        async def aclose(self):
            closed.append(self.name)

    probe = Probe(lambda: "x", name="probe")
    with Agent(backend=ScriptedBackend([final("x")]), tools=[probe]) as a:
        a.run("hi")
    assert closed == ["probe"]


class DownBackend(ScriptedBackend):
    """A server that is down for its first request, then answers."""

    def __init__(self, script):
        super().__init__(script)
        self.down = True

    async def stream(self, request):
        if self.down:
            self.down = False
            raise BackendError("server down")
        async for piece in super().stream(request):
            yield piece


def test_a_turn_that_never_reached_the_model_is_rolled_back():
    backend = DownBackend([final("hello")])
    a = Agent(backend=backend)
    with pytest.raises(BackendError, match="server down"):
        a.run("first try")
    assert a.history == []
    result = a.run("first try")
    assert result.output == "hello"
    assert backend.prompt_texts[0].count("first try") == 1
    assert [m.author.role.value for m in result.messages] == ["user", "assistant"]


def test_a_turn_that_failed_after_the_model_answered_keeps_its_messages():
    from agent.errors import MaxStepsError

    a = Agent(backend=ScriptedBackend(["<|channel|>analysis<|message|>hmm"]), max_steps=1)
    with pytest.raises(MaxStepsError):
        a.run("go")
    assert [m.author.role.value for m in a.history] == ["user", "assistant"]


def test_events_serialise_to_plain_json():
    import json

    from agent.events import event_to_dict

    events = list(Agent(backend=ScriptedBackend(script()), tools=[lookup]).stream("What is k1?"))
    data = [json.loads(json.dumps(event_to_dict(e))) for e in events]
    call = next(d for d in data if d["type"] == "tool_call")
    assert call["call"]["recipient"] == "functions.lookup" and call["call"]["arguments"] == '{"key": "k1"}'
    message = next(d for d in data if d["type"] == "message")
    assert message["message"]["role"] == "user" and message["message"]["content"][0]["text"] == "What is k1?"
    step = next(d for d in data if d["type"] == "step")
    assert step["usage"]["prompt_tokens"] > 0 and step["outcome"] == "tool_call"
    assert data[-1]["type"] == "done" and data[-1]["result"]["output"] == "The value is value-of-k1."


def test_a_turn_interrupted_before_the_model_answered_keeps_the_prompt():
    import asyncio

    class Silent(ScriptedBackend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.waiting = asyncio.Event()

        async def stream(self, request):
            if not self.prompts:
                self.prompts.append(list(request.prompt))
                self.waiting.set()
                await asyncio.Event().wait()  # prefill that never ends
            async for piece in super().stream(request):
                yield piece

    async def main():
        backend = Silent([final("It is Oslo.")])
        a = Agent(backend=backend)
        task = asyncio.create_task(a.arun("Capital of Norway?"))
        await backend.waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        from agent.harmony.invariants import history_problems
        from agent.harmony.parse import message_text

        assert [message_text(m) for m in a.history] == ["Capital of Norway?"]
        result = await a.arun("go on")
        assert result.output == "It is Oslo."
        assert backend.prompt_texts[1].index("Capital of Norway?") < backend.prompt_texts[1].index("go on")
        assert history_problems(a.history) == []

    asyncio.run(main())
