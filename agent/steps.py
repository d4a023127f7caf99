"""What one sampling pass asks the loop to do next: a typed step, as openai-agents' `NextStep*`.

`next_step(reading)` classifies the parser's `Reading` of a completion into one
of four steps. Each carries what the loop needs to act on it and to build the
next prompt; the loop matches on the type, never on strings.

- `ToolCalls`: complete calls (one, or several from a server that ignores the
  stop set), with the reasoning or preamble before them: run each in order.
- `FinalAnswer`: the turn's answer (with the reasoning before it).
- `KeepGoing`: only reasoning or a preamble: sample on from there.
- `Resample`: the output was unusable; what was usable is kept, and the model
  samples again from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from openai_harmony import Message

from agent.events import StepOutcome
from agent.harmony.parse import Reading, message_text


@dataclass(frozen=True)
class ToolCalls:
    reading: Reading
    outcome: StepOutcome = "tool_call"

    @property
    def calls(self) -> list[Message]:
        return [m for m in self.reading.messages if m.recipient]

    def signature(self) -> tuple[tuple[str, str], ...]:
        """What the calls are (recipient and arguments), to notice the model repeating itself."""
        return tuple((m.recipient or "", message_text(m)) for m in self.calls)


@dataclass(frozen=True)
class FinalAnswer:
    reading: Reading
    outcome: StepOutcome = "final"

    @property
    def text(self) -> str:
        answer = self.reading.last
        assert answer is not None
        return message_text(answer)


@dataclass(frozen=True)
class KeepGoing:
    reading: Reading
    outcome: StepOutcome = "continue"


@dataclass(frozen=True)
class Resample:
    reading: Reading
    outcome: StepOutcome = "retry"

    @property
    def reason(self) -> str:
        return self.reading.problem or "the output was unusable"


NextStep: TypeAlias = ToolCalls | FinalAnswer | KeepGoing | Resample


def next_step(reading: Reading) -> NextStep:
    """The step a completion's reading calls for."""
    last = reading.last
    if reading.problem is not None:
        return Resample(reading)
    if last is not None and last.recipient:
        return ToolCalls(reading)
    if last is not None and last.channel == "final":
        return FinalAnswer(reading)
    return KeepGoing(reading)
