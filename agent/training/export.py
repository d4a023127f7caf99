"""`export_sft`: saved sessions to a JSONL file of supervised fine-tuning examples, with a report.

Each line is one answered turn (see `agent.training.examples`):

- `input_ids`, `labels`: Harmony token ids, -100 where no loss is taken
  (TRL's SFTTrainer and a plain `model(input_ids, labels=labels)` use them as they are);
- `messages`, `tools`, `chat_template_kwargs` and a few Harmony keys: the same
  turn as chat messages (`agent.training.chat_format`);
- `meta`: the session, the turn, the rating, the calls, the token counts.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from agent.errors import ConfigurationError
from agent.training.chat_format import to_chat
from agent.training.clean import DEFAULT_THRESHOLD, NearDuplicates, exact_key, text_problem
from agent.training.examples import IGNORE, Skipped, TurnExample, session_turns

# Examples the gpt-oss fine-tuning guides ask for, by kind of task.
MINIMUM_EXAMPLES = (("FAQ-style tasks", 1_000), ("technical generation", 3_000), ("multi-step reasoning", 10_000))


@dataclass
class ExportReport:
    """What an export wrote and what it left out."""

    path: str | None = None
    sessions: int = 0
    turns: int = 0
    examples: int = 0
    tokens: int = 0
    target_tokens: int = 0
    longest: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> turns
    exact_duplicates: int = 0
    near_duplicates: int = 0
    broken_text: int = 0
    threshold: float | None = DEFAULT_THRESHOLD
    calls: Counter[str] = field(default_factory=Counter)  # recipient -> calls in the written examples

    def lines(self) -> list[str]:
        """The report as short lines for a terminal."""
        where = f" to {self.path}" if self.path else ""
        out = [f"examples: {self.examples:,} written{where} (from {self.turns:,} turns of {self.sessions:,} sessions)"]
        if self.examples:
            out.append(f"tokens: {self.tokens:,} ({self.target_tokens:,} trained on); longest example {self.longest:,}")
        for reason, count in self.skipped.most_common():
            out.append(f"skipped: {count:,} × {reason}")
        similar = (
            f"{self.near_duplicates:,} near (MinHash on the user's messages, Jaccard ≥ {self.threshold})"
            if self.threshold is not None
            else "near duplicates kept"
        )
        out.append(f"duplicates dropped: {self.exact_duplicates:,} exact, {similar}")
        if self.broken_text:
            out.append(f"broken text: {self.broken_text:,} examples dropped (invalid Unicode or mojibake)")
        if self.calls:
            out.append("tool calls: " + ", ".join(f"{name} {n:,}" for name, n in self.calls.most_common()))
        else:
            out.append("tool calls: none")
        out.append(self.size_advice())
        return out

    def size_advice(self) -> str:
        below = [f"{n:,} for {kind}" for kind, n in MINIMUM_EXAMPLES if self.examples < n]
        if not below:
            return f"size: {self.examples:,} examples meet the guides' minimums for every kind of task"
        return f"size: {self.examples:,} examples; the gpt-oss guides suggest at least " + ", ".join(below)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"], data["calls"] = dict(self.skipped), dict(self.calls)
        return data


def export_sft(
    store: Any = None,
    session_ids: Iterable[str] | None = None,
    *,
    out: str | Path | IO[str],
    all_sessions: bool = False,
    since: str | datetime.date | None = None,
    rated: str | None = None,
    drop_failed: bool = False,
    near_duplicates: float | None = DEFAULT_THRESHOLD,
) -> ExportReport:
    """Write the SFT examples of the chosen sessions to `out` (a path or a text file); returns the report.

    Sessions: `session_ids` (ids or unique prefixes), or every saved one with
    `all_sessions` or `rated`. Turns: only those that ended in an accepted final
    answer; `since` keeps turns begun on or after that date (UTC),
    `rated="good"` only sessions rated good, `drop_failed` drops turns in which a
    tool call failed. `near_duplicates=None` keeps near duplicates.
    """
    from agent.sessions import RATINGS, SessionStore

    store = store if store is not None else SessionStore()
    ids = list(session_ids or [])
    if rated is not None and rated not in RATINGS:
        raise ConfigurationError(f"--rated takes good or bad, not {rated!r}")
    if not ids and not all_sessions and rated is None:
        raise ConfigurationError("name the sessions to export (ids or prefixes), or pass --all")
    start = _timestamp(since) if since is not None else None
    chosen = [store.resolve(i) for i in ids] if ids else [info.id for info in reversed(store.list())]
    report = ExportReport(threshold=near_duplicates)
    near = NearDuplicates(near_duplicates) if near_duplicates is not None else None
    seen: set[str] = set()
    report.path = str(out) if isinstance(out, (str, Path)) else None
    with contextlib.ExitStack() as stack:
        stream = _open(out, stack) if isinstance(out, (str, Path)) else out
        for session_id in dict.fromkeys(chosen):
            saved = store.load(session_id)
            if rated is not None and saved.info.rating != rated:
                continue
            report.sessions += 1
            for turn in session_turns(saved):
                if isinstance(turn, Skipped):
                    report.skipped[turn.reason] += 1
                    continue
                report.turns += 1
                if start is not None and turn.started_at < start:
                    report.skipped["before --since"] += 1
                elif drop_failed and turn.errors:
                    report.skipped["a tool call failed (--drop-failed)"] += 1
                elif _broken(turn):
                    report.broken_text += 1
                else:
                    row = example_row(turn)
                    key = exact_key(row["input_ids"])
                    if key in seen:
                        report.exact_duplicates += 1
                    elif near is not None and near.seen(turn.user_text, turn.session):
                        report.near_duplicates += 1
                    else:
                        seen.add(key)
                        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
                        report.examples += 1
                        report.tokens += len(row["input_ids"])
                        report.target_tokens += row["meta"]["target_tokens"]
                        report.longest = max(report.longest, len(row["input_ids"]))
                        report.calls.update(turn.calls)
    return report


def example_row(turn: TurnExample) -> dict[str, Any]:
    """One JSONL row: token ids and labels, the chat form, and where it came from."""
    input_ids, labels = turn.render()
    target = sum(1 for label in labels if label != IGNORE)
    meta = {
        "session": turn.session,
        "turn": turn.turn,
        "rating": turn.rating,
        "calls": turn.calls,
        "failed_calls": len(turn.errors),
        "prompt_tokens": next((i for i, label in enumerate(labels) if label != IGNORE), len(labels)),
        "target_tokens": target,
    }
    return {"input_ids": input_ids, "labels": labels, **to_chat(turn), "meta": meta}


def _broken(turn: TurnExample) -> bool:
    from agent.harmony.parse import message_text

    texts = [message_text(m) for m in turn.history + turn.target]
    texts += [turn.settings.instructions or "", turn.settings.response_format or ""]
    return any(text_problem(t) for t in texts)


def _timestamp(since: str | datetime.date) -> float:
    if isinstance(since, str):
        try:
            since = datetime.date.fromisoformat(since.strip())
        except ValueError:
            raise ConfigurationError(f"--since takes a date like 2026-11-30, not {since!r}") from None
    moment = datetime.datetime(since.year, since.month, since.day, tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _open(path: str | Path, stack: contextlib.ExitStack) -> IO[str]:
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror or exc}") from None
