"""What a tool is, as the agent loop sees it.

Every tool answers one Harmony recipient: a user function (`functions.NAME`,
described in the developer message) or a built-in namespace (`browser.*`,
`python`, described in the system message with its trained definition).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from openai_harmony import ToolNamespaceConfig

# Seconds a call may take before the model is told it timed out; `timeout=None` opts out.
DEFAULT_TOOL_TIMEOUT = 120.0


class ToolExit(Exception):
    """A tool raised `SystemExit` or another `BaseException` of its own; the model is told."""

    @classmethod
    def of(cls, exc: BaseException) -> ToolExit:
        return cls(f"raised {type(exc).__name__}{f': {exc}' if str(exc) else ''}")


@dataclass(frozen=True)
class ToolCall:
    """One call the model made."""

    recipient: str  # as written by the model: "functions.get_weather", "browser.search", "python"
    name: str  # the tool's own name ("get_weather", "browser", "python")
    method: str | None  # the namespace member for built-ins ("search", "open"); None otherwise
    arguments: str  # the raw payload: JSON text, or Python source for `python`
    channel: str  # the channel of the call; the result goes back on the same one


class Tool(ABC):
    """Base of every tool. `invoke` returns the text the model will read.

    Raise `agent.errors.ToolRetry` for a problem the model can fix (bad
    arguments, nothing found); it is sent back as the result and counts against
    `retries`. Any other exception is reported to the model the same way,
    without a host traceback.
    """

    name: str
    requires_approval: bool = False
    retries: int = 3
    timeout: float | None = DEFAULT_TOOL_TIMEOUT
    max_output_chars: int = 20_000

    @abstractmethod
    async def invoke(self, call: ToolCall) -> str: ...

    def reset(self) -> None:
        """Forget per-conversation state (called by `Agent.reset()`)."""

    async def aclose(self) -> None:
        """Release resources (called when the agent closes)."""


class BuiltinTool(Tool):
    """A Harmony built-in namespace (`browser`, `python`), declared in the system message."""

    @abstractmethod
    def namespace_config(self) -> ToolNamespaceConfig:
        """The namespace as it is rendered in the system message."""
