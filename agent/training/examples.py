"""Training examples from saved sessions, in Harmony as gpt-oss saw them.

One example per answered user turn: the prompt exactly as the loop rendered it
when the turn started (the conversation so far, earlier turns' analysis dropped,
under the prompt settings stored with the turn), then the turn itself: every
assistant message with its analysis, preambles and calls, and the tool results
between them. `labels` equal `input_ids` on the tokens the assistant sampled
(its `<|channel|>`, `<|message|>`, `<|end|>`, `<|call|>` and the closing
`<|return|>` included; a `<|start|>assistant` only where the model wrote it,
after one of its own messages in the same sampling pass) and -100 on everything
else: the prompt, the tool results and the `<|start|>assistant` the loop writes
after each result or after a pass that ended early.

Inside a tool chain the loop extends the prompt with each message under its
canonical header and with the content tokens as sampled; the example encodes
the stored text again, which gives the same ids unless the model spelled its
text with an unusual split into tokens (the text is the same either way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Message, Role

from agent.harmony.encoding import special_ids
from agent.harmony.parse import message_text
from agent.harmony.render import PromptSettings, prompt_view, render_message, render_turn

IGNORE = -100  # the label of a token that carries no loss (PyTorch's and Hugging Face's convention)


@dataclass
class TurnExample:
    """One answered turn of a session, ready to render."""

    session: str
    turn: int  # 1-based position of the turn's user message among the session's user messages
    settings: PromptSettings
    history: list[Message]  # the conversation before the turn's answer, as the prompt held it (user message last)
    target: list[Message]  # what followed: assistant messages and tool results, ending in the final answer
    started_at: float = 0.0
    rating: str | None = None
    errors: list[str] = field(default_factory=list)  # failed tool calls of the turn
    steps: list[int | None] | None = None  # the sampling step that wrote each target message, when known

    @property
    def user_text(self) -> str:
        """The user's messages of the conversation up to this turn, the text near duplicates are judged on."""
        return "\n".join(message_text(m) for m in self.history if m.author.role == Role.USER)

    @property
    def calls(self) -> list[str]:
        """The recipients the turn called, in order."""
        return [m.recipient for m in self.target if m.author.role == Role.ASSISTANT and m.recipient]

    def render(self) -> tuple[list[int], list[int]]:
        return render_example(self.settings, self.history, self.target, self.steps)


@dataclass(frozen=True)
class Skipped:
    """A turn (or a whole session) that gives no example, and why."""

    session: str
    turn: int | None
    reason: str


def render_example(
    settings: PromptSettings, history: list[Message], target: list[Message], steps: list[int | None] | None = None
) -> tuple[list[int], list[int]]:
    """`input_ids` and `labels` for one turn: the rendered prompt, then the turn with its loss mask.

    `steps` (the sampling step of each target message) tells where a new sampling
    pass began: there the `<|start|>assistant` came from the loop, not the model.
    """
    ids = special_ids()
    header = list(ids.assistant_header)
    tokens = render_turn(settings, history)
    labels = [IGNORE] * len(tokens)
    header_given = True  # the prompt ends with `<|start|>assistant`
    for i, message in enumerate(target):
        piece = render_message(message)
        if message.author.role != Role.ASSISTANT:  # a tool result: context, then the loop's assistant header
            tokens += piece + header
            labels += [IGNORE] * (len(piece) + len(header))
            header_given = True
            continue
        if not header_given and steps is not None and i > 0 and steps[i] != steps[i - 1]:
            header_given = True  # a pass that ended after reasoning: the loop wrote the next header
            tokens += header
            labels += [IGNORE] * len(header)
        if header_given:
            piece = piece[len(header) :]
        if i == len(target) - 1 and message.channel == "final" and piece[-1] == ids.end:
            piece = piece[:-1] + [ids.return_]  # the model ends its answer with `<|return|>`
        tokens += piece
        labels += piece
        header_given = False
    if header_given and len(target) > 0:  # a turn never ends with a tool result; drop a dangling header
        del tokens[-len(header) :], labels[-len(header) :]
    return tokens, labels


def session_turns(saved: Any) -> Iterator[TurnExample | Skipped]:
    """The turns of a `SavedSession` that end in an accepted final answer, and the others as `Skipped`."""
    sid = saved.info.id
    settings_at = _settings_lookup(saved)
    if settings_at is None:
        yield Skipped(sid, None, "saved before sessions kept their prompt settings (tools unknown)")
        return
    messages, seqs = saved.messages, saved.seqs or list(range(len(saved.messages)))
    times = saved.times or [saved.info.created_at] * len(messages)
    compactions = sorted(saved.compactions, key=lambda c: c[0])
    history: list[Message] = []
    taken = applied = 0  # messages[:taken] are in `history` or were compacted away
    users = [i for i, m in enumerate(messages) if m.author.role == Role.USER]
    for number, u in enumerate(users, start=1):
        end = users[number] if number < len(users) else len(messages)
        # a compaction stored right after this user message happened as the turn started (and holds it)
        while applied < len(compactions) and compactions[applied][0] <= seqs[u] + 1:
            after, replacement = compactions[applied]
            history, applied = list(replacement), applied + 1
            taken = next((i for i, s in enumerate(seqs) if s >= after), len(messages))
        history += messages[taken : u + 1]
        prompt, target = list(history), messages[u + 1 : end]
        history += target
        taken = end
        last = u + len(target)
        if not target or target[-1].author.role != Role.ASSISTANT or target[-1].channel != "final":
            yield Skipped(sid, number, "no final answer")
        elif seqs[last] in saved.errors:
            yield Skipped(sid, number, "the answer was rejected")
        else:
            failed = [saved.errors[seqs[i]] for i in range(u + 1, last) if seqs[i] in saved.errors]
            steps = saved.steps[u + 1 : end] if saved.steps else None
            yield TurnExample(
                sid,
                number,
                settings_at(seqs[u]),
                prompt_view(prompt),
                target,
                times[u],
                saved.info.rating,
                failed,
                steps,
            )


def _settings_lookup(saved: Any) -> Callable[[int], PromptSettings] | None:
    """A function position -> `PromptSettings`, from the stored prompt settings; None when a session has none.

    A session from before prompt settings were stored is still exact when it had
    no tools: its settings then rebuild the header its digest names.
    """
    if saved.prompts:
        table = [(seq, PromptSettings.from_dict(data)) for seq, data in saved.prompts]

        def lookup(seq: int) -> PromptSettings:
            chosen = table[0][1]
            for start, settings in table:
                if start <= seq:
                    chosen = settings
            return chosen

        return lookup
    stored = saved.settings
    rebuilt = PromptSettings(
        reasoning_effort=stored.get("reasoning_effort") or "medium",
        date=stored.get("date"),
        instructions=stored.get("instructions"),
    )
    from agent.sessions import settings_digest

    if stored.get("header_digest") and stored["header_digest"] == settings_digest(rebuilt):
        return lambda seq: rebuilt
    return None
