"""`Agent`: the loop that samples, routes tool calls, and stops at a final answer.

One async generator (`_run_steps`) is the whole loop; `run`, `arun`, `stream`
and `astream` only drive it. Each step is one model call and ends in one of
four outcomes: `tool_call` (a result was appended, sample again), `final` (the
turn is done), `continue` (the model wrote only reasoning or a preamble), or
`retry` (unparseable output was thrown away). Limits end the run with a typed
error from `agent.errors`.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from openai_harmony import Author, Message, Role

from agent.backends.base import Backend, CompletionRequest, Usage, shared_prefix
from agent.errors import (
    BackendError,
    CompletionCutError,
    ConfigurationError,
    ContextOverflowError,
    MaxStepsError,
    ModelOutputError,
    OssAgentError,
    OutputValidationError,
    RepeatedToolCallError,
    ToolRetriesExhausted,
    ToolRetry,
)
from agent.events import (
    Event,
    HistoryCompacted,
    MessageEvent,
    PartialOutput,
    PreambleDelta,
    ReasoningDelta,
    RunFinished,
    RunResult,
    StepFinished,
    StepOutcome,
    TextDelta,
    ToolCallEvent,
    ToolCallRecord,
    ToolResultEvent,
)
from agent.harmony.encoding import special_ids
from agent.harmony.parse import CompletionParser, Reading, message_text, vocabulary_size
from agent.harmony.render import EFFORTS, PromptSettings, extend_chain, render_text, render_turn
from agent.history import Context, KeepAll, PolicyLike, apply_policy, default_policy
from agent.output import OutputInvalid, OutputSpec, OutputValidator, apply_validators
from agent.steps import FinalAnswer, KeepGoing, NextStep, Resample, ToolCalls, next_step
from tools.base import Tool, ToolCall, ToolExit
from tools.registry import ToolLike, ToolRegistry
from tools.text import MAX_MESSAGE_CHARS, clean_text

Approver = Callable[[ToolCall], "bool | Awaitable[bool]"]
T = TypeVar("T")
_Events = AsyncGenerator[Event, None]
_AGENT_DEFAULT: Any = object()  # `output_type` not given: the agent's own
_DELTAS = {"reasoning": ReasoningDelta, "preamble": PreambleDelta, "text": TextDelta}


@dataclass
class _Sample:
    """What one sampling pass produced."""

    reading: Reading = field(default_factory=Reading)
    tokens: list[int] = field(default_factory=list)  # as sampled
    usage: Usage = field(default_factory=Usage)
    backend_s: float = 0.0
    answer_streamed: str = ""  # final-answer text already sent as `TextDelta`s


@dataclass
class _Turn:
    """What one user turn carries from step to step."""

    result: RunResult[Any]
    spec: OutputSpec[Any] | None
    prompt: list[int]  # the next request's token ids
    outcome: StepOutcome = "continue"  # of the current step
    error: str | None = None  # why the current step was thrown away
    tool_s: float = 0.0  # time the current step spent in tools
    failures: dict[str, int] = field(default_factory=dict)  # tool errors in a row, per tool
    bad_outputs: int = 0  # unusable completions in a row
    invalid_answers: int = 0  # answers that failed the output type, in a row
    last_calls: tuple[tuple[str, str], ...] | None = None
    repeats: int = 0  # passes in a row with the same calls


class Agent:
    """An agent for gpt-oss: Harmony prompts, tool calls, one conversation.

    `Agent(model="gpt-oss:20b")` talks to Ollama; pass `backend=` for any other
    backend (`ScriptedBackend` in tests). Successive `run` calls continue the
    conversation; `reset()` starts a new one.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        model: str | None = None,
        tools: Iterable[ToolLike] = (),
        instructions: str | None = None,
        reasoning_effort: str = "medium",
        max_steps: int = 20,
        approve: Approver | None = None,
        output_retries: int = 2,
        max_repeated_calls: int = 3,
        date: str | None = None,
        history: PolicyLike | None = None,
        min_completion_tokens: int = 1024,
        output_type: Any = str,
        output_validators: Iterable[OutputValidator] = (),
    ) -> None:
        if backend is None:
            from agent.backends.ollama import OllamaBackend

            backend = OllamaBackend(model=model)
        elif model is not None:
            raise ConfigurationError("pass either backend= or model=, not both")
        if reasoning_effort not in EFFORTS:
            raise ConfigurationError(f"reasoning_effort must be one of {', '.join(EFFORTS)}")
        self.backend = backend
        self.tools = ToolRegistry(tools)
        self.approve = approve
        self.max_steps = max_steps
        self.output_retries = output_retries  # per run: unparseable outputs, and answers that fail validation
        self.output_type: Any = output_type
        OutputSpec.of(output_type)  # a type pydantic cannot read fails here, not at the first answer
        self.output_validators: list[OutputValidator] = list(output_validators)
        self.max_repeated_calls = max_repeated_calls
        self.history_policy: PolicyLike = default_policy() if history is None else history
        self.min_completion_tokens = min_completion_tokens  # below this much room the prompt is too long
        self.settings = PromptSettings(
            reasoning_effort=reasoning_effort,
            date=date or datetime.date.today().isoformat(),
            instructions=clean_text(instructions) if instructions else instructions,
            builtins=self.tools.system_namespaces(),  # the local tools; `_declare_tools` updates these each turn
            functions=self.tools.function_descriptions(),
        )
        self.history: list[Message] = []  # the full conversation, chain-of-thought included
        self.last_prompt: list[int] = []  # token ids of the latest request
        self.last_completion: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API -----------------------------------------------------------

    @property
    def reasoning_effort(self) -> str:
        return self.settings.reasoning_effort

    @reasoning_effort.setter
    def reasoning_effort(self, value: str) -> None:
        if value not in EFFORTS:
            raise ConfigurationError(f"reasoning_effort must be one of {', '.join(EFFORTS)}")
        self.settings.reasoning_effort = value

    @overload
    def run(self, prompt: str) -> RunResult[Any]: ...
    @overload
    def run(self, prompt: str, *, output_type: type[T]) -> RunResult[T]: ...
    @overload
    def run(self, prompt: str, *, output_type: Any) -> RunResult[Any]: ...

    def run(self, prompt: str, *, output_type: Any = _AGENT_DEFAULT) -> RunResult[Any]:
        """Run one user turn to its final answer.

        With an `output_type` (this call's, else the agent's) other than `str`, the
        answer is validated and `result.output` is the object (`raw_output` the text).
        """
        result = None
        for event in self.stream(prompt, output_type=output_type):
            if isinstance(event, RunFinished):
                result = event.result
        assert result is not None
        return result

    @overload
    async def arun(self, prompt: str) -> RunResult[Any]: ...
    @overload
    async def arun(self, prompt: str, *, output_type: type[T]) -> RunResult[T]: ...
    @overload
    async def arun(self, prompt: str, *, output_type: Any) -> RunResult[Any]: ...

    async def arun(self, prompt: str, *, output_type: Any = _AGENT_DEFAULT) -> RunResult[Any]:
        """Async twin of `run`."""
        async for event in self.astream(prompt, output_type=output_type):
            if isinstance(event, RunFinished):
                return event.result
        raise AssertionError("the run ended without a result")

    def stream(self, prompt: str, *, output_type: Any = _AGENT_DEFAULT) -> Iterator[Event]:
        """Run one user turn, yielding typed events as they happen."""
        loop = self._event_loop()
        events = self.astream(prompt, output_type=output_type)
        try:
            while True:
                try:
                    yield loop.run_until_complete(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(events.aclose())
            loop.run_until_complete(_finish_closings())

    def astream(self, prompt: str, *, output_type: Any = _AGENT_DEFAULT) -> AsyncGenerator[Event, None]:
        """Async twin of `stream`."""
        spec = OutputSpec.of(self.output_type if output_type is _AGENT_DEFAULT else output_type)
        return self._run_steps(prompt, spec)

    def reset(self) -> None:
        """Start a new conversation; tools forget their per-conversation state."""
        self.history.clear()
        self.last_prompt, self.last_completion = [], []
        for tool in self.tools:
            tool.reset()

    async def aclose(self) -> None:
        for tool in self.tools:
            await tool.aclose()
        await self.backend.aclose()

    def close(self) -> None:
        """Release the backend and tools (the sandbox container among them)."""
        loop = self._event_loop()
        loop.run_until_complete(self.aclose())
        loop.run_until_complete(_finish_closings())
        loop.run_until_complete(loop.shutdown_asyncgens())  # as asyncio.run ends: nothing left half-iterated
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        self._loop = None

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the loop ---------------------------------------------------------------

    async def _run_steps(self, prompt: str, spec: OutputSpec[Any] | None = None) -> AsyncGenerator[Event, None]:
        """One user turn. A turn that fails before the model produced anything (server down, context
        overflow) leaves the conversation as it was, so it can simply be retried; one the user interrupted
        (cancelled, Ctrl-C) keeps the prompt, so that "go on" or the next question follows it."""
        if len(prompt) > MAX_MESSAGE_CHARS:
            raise ContextOverflowError(
                f"the message is {len(prompt):,} characters; at most {MAX_MESSAGE_CHARS:,} fit in one message "
                "(about 125k tokens): shorten it, or give the agent a tool that reads it in parts"
            )
        result: RunResult[Any] = RunResult(output="")
        user = Message.from_role_and_content(Role.USER, clean_text(prompt))
        self.history.append(user)
        result.messages.append(user)
        reached_model = False
        try:
            # `aclosing`: a consumer that stops early closes every inner stream now, the server's included
            async with aclosing(self._steps(result, spec)) as steps:
                async for event in steps:
                    if not reached_model:
                        reached_model = True
                        yield MessageEvent(user, 0)
                    yield event
        except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit):
            raise  # interrupted: the prompt stays, as the user wrote it
        except BaseException:
            if not reached_model:
                self.history.pop()
            raise

    async def _declare_tools(self) -> None:
        """Declare the toolsets' tools for this turn (MCP servers start on first use).

        The settings change only when the tools did, so the prompt prefix (and the server's cache) survives.
        """
        await self.tools.refresh()
        builtins, functions = self.tools.system_namespaces(), self.tools.function_descriptions()
        if builtins != self.settings.builtins or functions != self.settings.functions:
            self.settings.builtins, self.settings.functions = builtins, functions

    async def _steps(self, result: RunResult[Any], spec: OutputSpec[Any] | None) -> AsyncGenerator[Event, None]:
        """The turn's model calls: sample, classify the completion into a typed step, act on it."""
        await self._declare_tools()
        self.settings.response_format = clean_text(spec.format_text()) if spec is not None else None
        probe = getattr(self.backend, "probe", None)  # server backends learn their context window here (once)
        if probe is not None:
            await probe()
        compacted = await self.compact()  # the start of a user turn: the only place the history may shrink
        if compacted is not None:
            yield compacted
        turn = _Turn(result, spec, render_turn(self.settings, self.history))
        for step in range(1, self.max_steps + 1):
            started, sample = time.perf_counter(), _Sample()
            budget = self._completion_budget(turn.prompt)  # a prompt with no room left ends the run here
            shared = shared_prefix(self.last_prompt, turn.prompt)
            self.last_prompt = turn.prompt
            async with aclosing(self._sampled(turn, budget, step, sample)) as deltas:
                async for event in deltas:
                    yield event
            result.usage += sample.usage
            next_ = next_step(sample.reading)
            turn.outcome, turn.error, turn.tool_s = next_.outcome, sample.reading.problem, 0.0
            async with aclosing(self._act(next_, turn, step, sample)) as events:
                async for event in events:
                    yield event
            duration = time.perf_counter() - started
            finished = StepFinished(
                step=step,
                outcome=turn.outcome,
                usage=sample.usage,
                prompt_tokens=len(self.last_prompt),
                shared_prefix_tokens=shared,
                duration_s=duration,
                backend_s=sample.backend_s,
                overhead_s=max(0.0, duration - sample.backend_s - turn.tool_s),
                error=turn.error,
            )
            result.steps.append(finished)
            yield finished
            if turn.outcome == "final":
                yield RunFinished(result)
                return
        raise MaxStepsError(f"no final answer after {self.max_steps} steps; raise max_steps or simplify the task")

    def _act(self, next_: NextStep, turn: _Turn, step: int, sample: _Sample) -> _Events:
        if isinstance(next_, ToolCalls):
            return self._run_calls(next_, turn, step, sample)
        if isinstance(next_, FinalAnswer):
            return self._answer(next_, turn, step, sample)
        if isinstance(next_, KeepGoing):
            return self._keep_going(next_, turn, step, sample)
        return self._resample(next_, turn, step, sample)

    async def _sampled(self, turn: _Turn, budget: int, step: int, sample: _Sample) -> _Events:
        """One request for the turn's prompt, its deltas (and partial structured answers) as they come."""
        spec, partial = turn.spec, None
        request = CompletionRequest(turn.prompt, special_ids().stops, budget, spec.schema if spec is not None else None)
        async with aclosing(self._sample(request, step, sample)) as deltas:
            async for delta in deltas:
                yield delta
                if spec is not None and isinstance(delta, TextDelta):
                    now = spec.partial(sample.answer_streamed)
                    if now is not None and now != partial:
                        partial = now
                        yield PartialOutput(now, step)
        self.last_completion = sample.tokens

    async def _resample(self, next_: Resample, turn: _Turn, step: int, sample: _Sample) -> _Events:
        """Keep what was usable, then sample again from it; too many in a row end the run."""
        for message in next_.reading.messages:  # only usable messages ever reach the history
            yield self._add(message, turn.result, step)
        turn.bad_outputs += 1
        if turn.bad_outputs > self.output_retries:
            raise self._bad_output_error(next_.reading, turn.bad_outputs, sample)
        turn.prompt = _continued(turn.prompt, next_.reading)

    async def _keep_going(self, next_: KeepGoing, turn: _Turn, step: int, sample: _Sample) -> _Events:
        """Only reasoning or a preamble: the model goes on from there."""
        for message in next_.reading.messages:
            yield self._add(message, turn.result, step)
        turn.bad_outputs = 0
        turn.prompt = _continued(turn.prompt, next_.reading)

    async def _run_calls(self, next_: ToolCalls, turn: _Turn, step: int, sample: _Sample) -> _Events:
        """Every complete call of the pass, in order, each answered before the next; the prompt grows as the
        sampled tokens, the call's stop token and the result, so the next request extends this one."""
        turn.bad_outputs = 0
        signature = next_.signature()
        turn.repeats = turn.repeats + 1 if signature == turn.last_calls else 1
        turn.last_calls = signature
        repeated = turn.repeats >= self.max_repeated_calls
        started = time.perf_counter()
        for message, span in zip(next_.reading.messages, next_.reading.spans, strict=True):
            yield self._add(message, turn.result, step)
            if not message.recipient:
                turn.prompt = turn.prompt + span + list(special_ids().assistant_header)
            elif repeated:
                refused = ToolCall(
                    message.recipient, message.recipient, None, message_text(message), message.channel or "commentary"
                )
                self._append(
                    _tool_reply(refused, "not run: the same call was repeated; the run was stopped"), turn.result
                )
            else:
                async with aclosing(self._call_tool(message, step, turn.result, turn.failures)) as events:
                    async for event in events:
                        yield event
                turn.prompt = extend_chain(turn.prompt, span, special_ids().call, [self.history[-1]])
        turn.tool_s = time.perf_counter() - started
        if repeated:
            raise RepeatedToolCallError(
                f"the model called {next_.calls[-1].recipient} with the same arguments {turn.repeats} times in a row"
            )

    async def _answer(self, next_: FinalAnswer, turn: _Turn, step: int, sample: _Sample) -> _Events:
        """The answer; with an output type it must validate, or the model is told why and tries again."""
        result, spec = turn.result, turn.spec
        for message in next_.reading.messages:
            yield self._add(message, result, step)
        result.output = result.raw_output = raw = next_.text
        streamed = sample.answer_streamed
        if raw.startswith(streamed) and len(raw) > len(streamed):
            yield TextDelta(raw[len(streamed) :], step)  # read as the answer, not streamed as one
        if spec is None:
            return
        try:
            result.output = await apply_validators(spec.validate(raw), self.output_validators)
        except OutputInvalid as exc:  # the answer stays; the model is told what is wrong
            turn.invalid_answers += 1
            if turn.invalid_answers > self.output_retries:
                violations = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'the answer'}: {e['msg']}" for e in exc.errors[:8]
                )
                raise OutputValidationError(
                    f"the final answer did not validate as {spec.name} {turn.invalid_answers} times in a row: "
                    f"{violations}",
                    raw=raw,
                    errors=exc.errors,
                ) from None
            feedback = Message.from_role_and_content(Role.USER, clean_text(exc.feedback))
            yield self._add(feedback, result, step)
            turn.prompt = render_turn(self.settings, self.history)
            turn.outcome, turn.error = "retry", exc.feedback

    async def _sample(self, request: CompletionRequest, step: int, sample: _Sample) -> AsyncGenerator[Event, None]:
        """Stream one completion through the parser, yielding text deltas."""
        parser = CompletionParser(self.tools.route)
        vocabulary = vocabulary_size()
        stream = self.backend.stream(request)
        try:
            while True:
                waited = time.perf_counter()
                try:
                    piece = await stream.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    sample.backend_s += time.perf_counter() - waited
                if isinstance(piece, Usage):
                    sample.usage = piece
                    continue
                if parser.done:  # past the end of the answer or call: wait for the usage, ignore the text
                    continue
                for token in piece:
                    if not 0 <= token < vocabulary:
                        raise BackendError(
                            f"the server sent token id {token}, which the Harmony vocabulary does not have "
                            f"(0–{vocabulary - 1}); is it serving a gpt-oss model?"
                        )
                    delta = parser.feed(token)
                    if delta is not None and delta.kind in _DELTAS:
                        if delta.kind == "text":
                            sample.answer_streamed += delta.text
                        yield _DELTAS[delta.kind](delta.text, step)
                    if parser.done:
                        break
        finally:
            close = getattr(stream, "aclose", None)  # async generators stop the server stream on close
            if close is not None:
                await close()
        sample.tokens = parser.tokens
        cut = sample.usage.finish_reason == "length" or (not parser.done and len(parser.tokens) >= request.max_tokens)
        sample.reading = parser.finish(cut=cut)
        if not sample.usage.prompt_tokens:  # the backend reported nothing: count ourselves
            sample.usage = Usage(prompt_tokens=len(request.prompt), completion_tokens=len(parser.tokens))

    def _bad_output_error(self, reading: Reading, times: int, sample: _Sample) -> OssAgentError:
        if reading.cut:
            return CompletionCutError(
                f"the model's output was cut at the completion budget (at most {self.backend.max_completion_tokens} "
                "tokens) "
                f"or the context window {times} times in a row; raise max_completion_tokens or lower the reasoning "
                "effort"
            )
        return ModelOutputError(
            f"the model's output could not be parsed {times} times in a row ({reading.problem}); "
            "try again or lower the reasoning effort",
            raw=render_text(sample.tokens),
        )

    async def _call_tool(
        self, message: Message, step: int, result: RunResult, failures: dict[str, int]
    ) -> AsyncGenerator[Event, None]:
        """Run one call and append exactly one tool message for it, whatever happens."""
        started = time.perf_counter()
        arguments = message_text(message)
        channel = message.channel or "commentary"
        error: str | None = None
        tool: Tool | None = None
        try:
            tool, call = self.tools.resolve(message.recipient or "", arguments, channel)
        except ToolRetry as exc:
            call = ToolCall(message.recipient or "", message.recipient or "", None, arguments, channel)
            output = error = str(exc)
        yield ToolCallEvent(call, step)
        if tool is not None:
            try:
                output, error = await self._invoke(tool, call)
            except BaseException:  # cancelled, Ctrl-C, or a failure that ends the run: the call still gets a result
                self._append(_tool_reply(call, f"{call.recipient} did not finish: the run was stopped"), result)
                raise
        budget_key = tool.name if tool is not None else call.recipient
        if error is None:
            failures.pop(budget_key, None)
        else:
            failures[budget_key] = failures.get(budget_key, 0) + 1
        output = clean_text(_truncate(output, min(tool.max_output_chars if tool else 2_000, MAX_MESSAGE_CHARS)))
        duration = time.perf_counter() - started
        result.tool_calls.append(ToolCallRecord(call, output, error, duration))
        yield ToolResultEvent(call, output, step, error, duration)
        yield self._add(_tool_reply(call, output), result, step)
        retries = tool.retries if tool is not None else 3
        if failures.get(budget_key, 0) > retries:
            raise ToolRetriesExhausted(f"{budget_key} failed {failures[budget_key]} times; last error: {error}")

    async def _invoke(self, tool: Tool, call: ToolCall) -> tuple[str, str | None]:
        """Approval, timeout and error handling around `tool.invoke`; returns (output, error)."""
        if tool.requires_approval:
            approved = False
            if self.approve is not None:
                verdict = self.approve(call)
                approved = bool(await verdict) if inspect.isawaitable(verdict) else bool(verdict)
            if not approved:
                message = f"the user declined to run {call.recipient}; do not retry it, answer without it"
                return message, None
        try:
            output = await asyncio.wait_for(_contained(tool.invoke(call)), tool.timeout)
            return output or "(no output)", None
        except ToolRetry as exc:
            return str(exc), str(exc)
        except asyncio.TimeoutError:
            message = f"{call.recipient} timed out after {tool.timeout} s"
            return message, message
        except OssAgentError:
            raise  # infrastructure (backend, sandbox) failures end the run
        except ToolExit as exc:
            message = f"{call.recipient} failed: it {exc}"
            return message, message
        except asyncio.CancelledError:
            if _cancelling():
                raise  # the run itself is being cancelled
            message = f"{call.recipient} failed: it cancelled itself"
            return message, message
        except (KeyboardInterrupt, GeneratorExit):
            raise  # the user's Ctrl-C (sync tools run in a thread, where this cannot come from the user)
        except BaseException as exc:  # the tool's own bug or its sys.exit(): tell the model, not the host's traceback
            message = f"{call.recipient} failed: {type(exc).__name__}: {exc}"
            return message, message

    # -- helpers ----------------------------------------------------------------

    def _add(self, message: Message, result: RunResult, step: int) -> MessageEvent:
        self._append(message, result)
        return MessageEvent(message, step)

    def _append(self, message: Message, result: RunResult) -> None:
        self.history.append(message)
        result.messages.append(message)

    def _completion_floor(self) -> int:
        return min(self.min_completion_tokens, self.backend.max_completion_tokens)

    def _completion_budget(self, prompt_ids: list[int]) -> int:
        """`min(max_completion_tokens, room left)`; `ContextOverflowError` when the room is below the floor."""
        window = self.backend.context_window
        room, floor = window - len(prompt_ids), self._completion_floor()
        if room < floor:
            hint = (
                "this agent keeps the whole history (history=KeepAll()): use a compacting policy, "
                "or start a new conversation"
                if isinstance(self.history_policy, KeepAll)
                else "start a new conversation (/reset), or use a larger context window"
            )
            raise ContextOverflowError(
                f"the prompt is {len(prompt_ids):,} tokens; the context window of {window:,} leaves {max(room, 0):,}, "
                f"less than the {floor:,} a completion needs; {hint}"
            )
        return min(self.backend.max_completion_tokens, room)

    def context(self) -> Context:
        """What the history policy sees: the window, the header size, the completion floor."""
        header = render_turn(self.settings, [])
        return Context(
            window=self.backend.context_window,
            header_tokens=len(header) - len(special_ids().assistant_header),
            completion_floor=self._completion_floor(),
            summarize=self._summarize,
        )

    async def compact(self, policy: PolicyLike | None = None) -> HistoryCompacted | None:
        """Apply the history policy (or `policy`, e.g. a forced one) now; None when nothing changed.

        Only call it between turns: inside a tool chain the prompt must stay a prefix of the next one.
        """
        context = self.context()
        before = context.prompt_tokens(self.history)
        compaction = await apply_policy(policy or self.history_policy, self.history, context)
        if compaction is None or compaction.history == self.history:
            return None
        if self.history and self.history[-1].author.role == Role.USER and self.history[-1] not in compaction.history:
            raise ConfigurationError("the history policy dropped the message of the turn that is starting")
        messages_before = len(self.history)
        self.history[:] = compaction.history
        return HistoryCompacted(
            compaction.summary, before, context.prompt_tokens(self.history), messages_before, list(self.history)
        )

    async def _summarize(self, messages: list[Message]) -> str:
        """The model itself, at low effort and without tools, summarises `messages`."""
        lines = []
        for message in messages:
            role = message.author.role
            if role == Role.ASSISTANT and message.channel == "analysis":
                continue
            who = {Role.USER: "User", Role.TOOL: f"Tool {message.author.name}"}.get(role, "Assistant")
            text = message_text(message)
            if message.recipient:
                who, text = f"Assistant (called {message.recipient})", text[:500]
            lines.append(f"{who}: {text[:4000]}")
        transcript = "\n\n".join(lines)[: MAX_MESSAGE_CHARS // 2]
        writer = Agent(
            self.backend,
            instructions="Summarise the conversation you are given in at most 200 words: the user's goals, facts "
            "established, decisions and open questions. Write only the summary.",
            reasoning_effort="low",
            max_steps=3,
            date=self.settings.date,
            history=KeepAll(),
        )
        result = await writer.arun(transcript)
        return result.output

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "run()/stream() cannot be called inside a running event loop; use arun()/astream()"
            )
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop


def _continued(prompt: list[int], reading: Reading) -> list[int]:
    """The prompt to sample again from: the kept messages as they are, then a new assistant header."""
    if not reading.tokens:
        return prompt  # nothing usable: the same prompt, never a doubled `<|start|>assistant`
    return prompt + reading.tokens + list(special_ids().assistant_header)


def _tool_reply(call: ToolCall, output: str) -> Message:
    return (
        Message.from_author_and_content(Author.new(Role.TOOL, call.recipient), output)
        .with_recipient("assistant")
        .with_channel(call.channel)
    )


async def _finish_closings() -> None:
    """Run the closings of async generators that were dropped mid-iteration (httpx's byte streams, when a
    completion stops before the server's stream ends): asyncio schedules them on the loop, and a sync call
    that returned at once would leave them pending ("Task was destroyed but it is pending!")."""
    while True:  # closing one generator can drop the next one down its chain
        gc.collect()  # generators held in reference cycles (an exception's frames) are found now
        await asyncio.sleep(0)  # the loop's finalizer hook creates the closing tasks on its next turn
        closings = [t for t in asyncio.all_tasks() if type(t.get_coro()).__name__ == "async_generator_athrow"]
        if not closings:
            return
        await asyncio.gather(*closings, return_exceptions=True)


async def _contained(invocation: Awaitable[str]) -> str:
    """Await a tool; its own `SystemExit` (which asyncio would let escape the event loop) becomes an error."""
    try:
        return await invocation
    except (Exception, asyncio.CancelledError, KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:
        raise ToolExit.of(exc) from None


def _cancelling() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return True if task is None or cancelling is None else cancelling() > 0


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}\n… [output truncated: {cut} more characters]"
