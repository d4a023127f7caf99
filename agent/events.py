"""Typed events of a run, and its result.

The same events feed the terminal UI, `--json` output, the streaming API and
tests. Every event carries the step (one model call) it belongs to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, Union

from openai_harmony import Message

from agent.backends.base import Usage
from tools.base import ToolCall

OutputT = TypeVar("OutputT")
StepOutcome = Literal["tool_call", "final", "continue", "retry"]


@dataclass(frozen=True)
class ReasoningDelta:
    """Chain-of-thought text (`analysis` channel). Never show it as the answer."""

    text: str
    step: int
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True)
class PreambleDelta:
    """A message to the user before tool calls (`commentary` without a recipient)."""

    text: str
    step: int
    type: Literal["preamble"] = "preamble"


@dataclass(frozen=True)
class TextDelta:
    """Final-answer text (`final` channel)."""

    text: str
    step: int
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class PartialOutput:
    """With an `output_type`: the answer so far as an object, once its JSON validates as a prefix."""

    output: Any
    step: int
    type: Literal["partial_output"] = "partial_output"


@dataclass(frozen=True)
class ToolCallEvent:
    """The model called a tool; the call is about to run (after approval, if needed)."""

    call: ToolCall
    step: int
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True)
class ToolResultEvent:
    """A tool's result as the model will read it. `error` is set when the call failed."""

    call: ToolCall
    output: str
    step: int
    error: str | None = None
    duration_s: float = 0.0
    type: Literal["tool_result"] = "tool_result"


@dataclass(frozen=True)
class MessageEvent:
    """A message was added to the conversation (written as each one completes)."""

    message: Message
    step: int
    type: Literal["message"] = "message"


@dataclass(frozen=True)
class StepFinished:
    """One model call ended. `shared_prefix_tokens` counts prompt tokens equal to the previous request's."""

    step: int
    outcome: StepOutcome
    usage: Usage
    prompt_tokens: int
    shared_prefix_tokens: int
    duration_s: float
    backend_s: float  # time spent waiting for the backend
    overhead_s: float  # time the loop itself spent: rendering, parsing, bookkeeping
    error: str | None = None  # why a `retry` step was thrown away
    type: Literal["step"] = "step"


@dataclass(frozen=True)
class HistoryCompacted:
    """At the start of a turn, the history policy shortened what the prompt keeps.

    `history` is the history from now on; sessions store it so that a resumed
    conversation renders the same prompt.
    """

    summary: str  # what was done, e.g. "shrank 12 old tool results and dropped the 3 oldest turns"
    tokens_before: int
    tokens_after: int
    messages_before: int
    history: list[Message]
    type: Literal["compacted"] = "compacted"


@dataclass
class ToolCallRecord:
    call: ToolCall
    output: str
    error: str | None
    duration_s: float


@dataclass
class RunResult(Generic[OutputT]):
    """What `Agent.run` returns: `output` is the answer text, or the validated object of an `output_type`."""

    output: OutputT
    messages: list[Message] = field(default_factory=list)  # added by this run, the user's included
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    steps: list[StepFinished] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    raw_output: str = ""  # the final answer as the model wrote it


@dataclass(frozen=True)
class RunFinished:
    result: RunResult[Any]
    type: Literal["done"] = "done"


Event = Union[  # noqa: UP007 (a runtime alias of many members reads better this way)
    ReasoningDelta,
    PreambleDelta,
    TextDelta,
    PartialOutput,
    ToolCallEvent,
    ToolResultEvent,
    MessageEvent,
    StepFinished,
    HistoryCompacted,
    RunFinished,
]


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as plain JSON data: `type` first, Harmony messages as their dicts (`oss-agent run --json`)."""
    data: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        if f.name != "type":
            data[f.name] = _plain(getattr(event, f.name))
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return _plain(value.to_dict())
    if hasattr(value, "model_dump") and not isinstance(value, type):  # a validated pydantic output
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):  # enums
        return value.value
    return value
