"""The backend protocol: token ids in, token ids out.

The loop renders every prompt itself with Harmony and hands the backend the
token ids. A backend streams back the completion's token ids (chunks of any
size) and, last, one `Usage`. It must never let a server re-render the
conversation, and it stops on the ids in `CompletionRequest.stop`. A backend
whose server drops the final stop token (Ollama raw mode) simply ends the
stream; the loop works out which stop it was from the parsed message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

DEFAULT_COMPLETION_TOKENS = 8192  # tokens one completion may take unless a backend is told otherwise (-o max_tokens)


@dataclass(frozen=True)
class CompletionRequest:
    """One sampling pass."""

    prompt: list[int]  # ends with `<|start|>assistant`
    stop: frozenset[int]  # `<|call|>` and `<|return|>`; never `<|end|>`
    max_tokens: int  # completion budget for this step
    # A JSON schema the body of a final answer (`<|channel|>final <|constrain|>json<|message|>…`) must follow.
    # Backends that can constrain sampling apply it to that body only; the others ignore it.
    final_schema: dict[str, Any] | None = None


@dataclass
class Usage:
    """What one sampling pass cost, as the backend reports it."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens the server did not have to prefill
    completion_tokens: int = 0
    prompt_seconds: float = 0.0  # prefill time
    completion_seconds: float = 0.0  # decode time
    total_seconds: float = 0.0
    # "length" when the server (or the backend itself) cut the completion at the token
    # budget or the context window; the loop never executes or returns a cut completion.
    finish_reason: str | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.cached_prompt_tokens + other.cached_prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.prompt_seconds + other.prompt_seconds,
            self.completion_seconds + other.completion_seconds,
            self.total_seconds + other.total_seconds,
            other.finish_reason or self.finish_reason,
        )


@runtime_checkable
class Backend(Protocol):
    """What the loop needs from a model backend."""

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to: prompt plus completion."""
        ...

    @property
    def max_completion_tokens(self) -> int:
        """Completion budget per sampling pass."""
        ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        """Yield completion token ids in chunks, then one `Usage`."""
        ...

    async def aclose(self) -> None:
        """Release connections and caches."""
        ...


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on slice equality: C-speed comparisons
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
