"""History policies: what a long conversation keeps in the prompt.

A policy runs at the start of a user turn, never inside a tool chain, and
returns a shorter history or None (keep it as it is). It sees whole turns: a
turn is a user message through its final answer, tool calls and results
included; the system and developer messages are rendered from the agent's
settings and are never part of the history, so no policy can drop them.

Policies compact in large steps: nothing happens until the prompt passes the
high-water mark (`high`, a share of the context window), and then the history
is cut to the low-water mark (`low`), so the prompt's prefix, and the server's
cache of it, stays the same for many turns between two compactions.

Built in: `KeepAll` (never compacts), `DropOldestTurns`, `ShrinkToolResults`
(old tool results become one-line stubs, then the oldest turns go) and
`Summarize` (the model summarises the turns it drops). Any callable with the
`HistoryPolicy` signature works too.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from openai_harmony import Message, Role

from agent.harmony.encoding import get_encoding
from agent.harmony.parse import message_text
from agent.harmony.render import prompt_view

Summarizer = Callable[[list[Message]], Awaitable[str]]


@dataclass
class Context:
    """What a policy knows when it runs."""

    window: int  # tokens the backend can attend to
    header_tokens: int  # the system and developer messages (never dropped)
    completion_floor: int  # a prompt must leave at least this much room for the completion
    summarize: Summarizer | None = None  # ask the model itself (same backend, low effort)
    _sizes: dict[int, int] = field(default_factory=dict)

    def prompt_tokens(self, history: list[Message]) -> int:
        """Tokens of the prompt this history renders to (earlier turns' reasoning dropped, as sent)."""
        total = self.header_tokens + 2  # the trailing `<|start|>assistant`
        for message in prompt_view(history):
            key = id(message)
            if key not in self._sizes:
                self._sizes[key] = len(get_encoding().render(message))
            total += self._sizes[key]
        return total

    def limit(self, share: float) -> int:
        """A share of the room the window leaves after the completion floor."""
        return int((self.window - self.completion_floor) * share)


@dataclass(frozen=True)
class Compaction:
    """What a policy did: the new history and a one-line account of it."""

    history: list[Message]
    summary: str  # e.g. "dropped 12 turns", "shrank 30 tool results"


HistoryPolicyFn = Callable[[list[Message], Context], "Compaction | Awaitable[Compaction | None] | None"]


@runtime_checkable
class HistoryPolicy(Protocol):
    """An object whose `compact` decides what the prompt keeps."""

    def compact(self, history: list[Message], context: Context) -> Compaction | Awaitable[Compaction | None] | None: ...


PolicyLike: TypeAlias = HistoryPolicy | HistoryPolicyFn


async def apply_policy(policy: PolicyLike, history: list[Message], context: Context) -> Compaction | None:
    """Run a policy object or callable, sync or async."""
    compact = policy.compact if isinstance(policy, HistoryPolicy) else policy
    outcome = compact(history, context)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    return outcome


def turns(history: list[Message]) -> list[list[Message]]:
    """The history split into turns, each starting at a user message (anything before the first is turn 0)."""
    out: list[list[Message]] = []
    for message in history:
        if message.author.role == Role.USER or not out:
            out.append([])
        out[-1].append(message)
    return out


class KeepAll:
    """Never compacts: a conversation that outgrows the window ends with `ContextOverflowError`."""

    def compact(self, history: list[Message], context: Context) -> Compaction | None:
        return None


@dataclass
class DropOldestTurns:
    """Past `high` of the window, drop the oldest whole turns until the prompt is under `low`."""

    high: float = 0.75
    low: float = 0.5

    def compact(self, history: list[Message], context: Context) -> Compaction | None:
        if context.prompt_tokens(history) <= context.limit(self.high):
            return None
        kept, dropped = _drop_until(turns(history), context, context.limit(self.low))
        if not dropped:
            return None
        return Compaction(_flat(kept), f"dropped {_oldest(len(dropped))}")


@dataclass
class ShrinkToolResults:
    """Past `high`, old tool results become one-line stubs, oldest first; if that is not enough,
    the oldest turns go, until the prompt is under `low`. The last `keep_turns` turns are untouched."""

    high: float = 0.75
    low: float = 0.5
    keep_turns: int = 2
    stub_over_chars: int = 200  # shorter results are kept as they are

    def compact(self, history: list[Message], context: Context) -> Compaction | None:
        if context.prompt_tokens(history) <= context.limit(self.high):
            return None
        target = context.limit(self.low)
        all_turns = turns(history)
        shrunk = 0
        old = max(0, len(all_turns) - self.keep_turns)
        for turn in all_turns[:old]:
            for i, message in enumerate(turn):
                text = message_text(message)
                if message.author.role == Role.TOOL and len(text) > self.stub_over_chars and not _is_stub(text):
                    turn[i] = _stub(message, text)
                    shrunk += 1
            if context.prompt_tokens(_flat(all_turns)) <= target:
                break
        kept, dropped = _drop_until(all_turns, context, target, keep=self.keep_turns)
        if not shrunk and not dropped:
            return None
        done = [f"shrank {_plural(shrunk, 'old tool result')}"] if shrunk else []
        done += [f"dropped {_oldest(len(dropped))}"] if dropped else []
        return Compaction(_flat(kept), " and ".join(done))


@dataclass
class Summarize:
    """Past `high`, the oldest turns are dropped until the prompt is under `low`, and the model
    summarises them into one message at the start of the history."""

    high: float = 0.75
    low: float = 0.5

    async def compact(self, history: list[Message], context: Context) -> Compaction | None:
        if context.prompt_tokens(history) <= context.limit(self.high):
            return None
        kept, dropped = _drop_until(turns(history), context, context.limit(self.low) - 512)
        if not dropped or context.summarize is None:
            return None
        earlier = _flat(dropped)
        text = (await context.summarize(earlier)).strip()
        summary = Message.from_role_and_content(
            Role.USER, f"(A summary of our earlier conversation, for context.)\n{text}"
        )
        return Compaction([summary, *_flat(kept)], f"summarised {_oldest(len(dropped))}")


def forced(policy: PolicyLike) -> PolicyLike:
    """The same policy, compacting now and as far as it goes (for `/compact`): built-in policies keep
    only the turns they always keep; a custom policy runs as it is."""
    if dataclasses.is_dataclass(policy) and not isinstance(policy, type) and hasattr(policy, "high"):
        return dataclasses.replace(policy, high=0.0, low=0.0)
    return policy


def describe(policy: PolicyLike, context: Context) -> str:
    """One line: the policy and its marks in tokens."""
    name = getattr(policy, "__name__", None) or type(policy).__name__
    high, low = getattr(policy, "high", None), getattr(policy, "low", None)
    if isinstance(high, float) and isinstance(low, float):
        return f"{name}: compacts past {context.limit(high):,} tokens, down to {context.limit(low):,}"
    return name


def default_policy() -> PolicyLike:
    """Shrink old tool results, then drop the oldest turns: no extra model call, and tool output
    (pages, sandbox dumps) is what fills a local model's window first."""
    return ShrinkToolResults()


def _drop_until(
    all_turns: list[list[Message]], context: Context, target: int, keep: int = 1
) -> tuple[list[list[Message]], list[list[Message]]]:
    """Drop the oldest turns until the prompt fits `target`, keeping at least the last `keep` turns."""
    dropped: list[list[Message]] = []
    kept = list(all_turns)
    while len(kept) > max(1, keep) and context.prompt_tokens(_flat(kept)) > target:
        dropped.append(kept.pop(0))
    return kept, dropped


def _flat(all_turns: list[list[Message]]) -> list[Message]:
    return [m for turn in all_turns for m in turn]


_STUB_MARK = "[elided to keep the conversation within the context window:"


def _stub(message: Message, text: str) -> Message:
    first = " ".join(text.split())[:80]
    stub = f"{_STUB_MARK} {len(text):,} characters of {message.author.name or 'tool'} output that began: {first}…]"
    return (
        Message.from_author_and_content(message.author, stub)
        .with_recipient(message.recipient or "assistant")
        .with_channel(message.channel or "commentary")
    )


def _is_stub(text: str) -> bool:
    return text.startswith(_STUB_MARK)


def _oldest(n: int) -> str:
    return "the oldest turn" if n == 1 else f"the {n} oldest turns"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
