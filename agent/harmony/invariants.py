"""What every conversation history must satisfy, whatever the model sent.

`history_problems(agent.history)` lists every violation (an empty list means
the history renders back into a valid Harmony prompt):

- every message renders, its text is valid Unicode, and an assistant message
  parses back to the same header;
- an assistant message has a known channel, a content type of one word
  (`code`, `json`, `<|constrain|>json`), and either no recipient or one that
  names an offered tool;
- every call is followed by exactly one tool result from that recipient, and
  every tool result answers the call right before it;
- a user turn has at most one `final`, and nothing follows it in that turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from openai_harmony import Conversation, HarmonyError, Message, Role

from agent.harmony.encoding import get_encoding
from agent.harmony.header import CHANNELS
from agent.harmony.parse import message_text
from tools.text import has_lone_surrogate

_CONTENT_TYPE = re.compile(r"(<\|constrain\|>)?[^\s<>|]+")


def history_problems(history: list[Message], route: Callable[[str], str | None] | None = None) -> list[str]:
    """Every way `history` breaks the invariants above; `route` says which recipients are offered."""
    problems: list[str] = []
    final_seen = False
    for i, message in enumerate(history):
        where = f"message {i} ({message.author.role.value})"
        problems += [f"{where}: {p}" for p in _message_problems(message, route)]
        role = message.author.role
        previous = history[i - 1] if i else None
        if role == Role.USER:
            final_seen = False
        elif final_seen:
            problems.append(f"{where}: follows the turn's final answer")
        if role == Role.ASSISTANT:
            final_seen = final_seen or (message.channel == "final" and not message.recipient)
            if message.recipient:
                after = history[i + 1] if i + 1 < len(history) else None
                if after is None or after.author.role != Role.TOOL or after.author.name != message.recipient:
                    problems.append(f"{where}: the call to {message.recipient} has no result after it")
        if role == Role.TOOL and (
            previous is None or previous.author.role != Role.ASSISTANT or previous.recipient != message.author.name
        ):
            problems.append(f"{where}: a tool result that answers no call")
    try:
        get_encoding().render_conversation(Conversation.from_messages(history))
    except (HarmonyError, ValueError) as exc:
        problems.append(f"the history does not render: {exc}")
    return problems


def _message_problems(message: Message, route: Callable[[str], str | None] | None) -> list[str]:
    text = message_text(message)
    if has_lone_surrogate(text):
        return ["its text holds a lone surrogate"]
    enc = get_encoding()
    try:
        tokens = enc.render(message)
    except (HarmonyError, ValueError) as exc:
        return [f"does not render: {exc}"]
    if message.author.role != Role.ASSISTANT:
        return []
    problems = []
    if message.channel not in CHANNELS:
        problems.append(f"unknown channel {message.channel!r}")
    if message.content_type is not None and not _CONTENT_TYPE.fullmatch(message.content_type):
        problems.append(f"content type {message.content_type!r} is not one word")
    if message.recipient is not None and route is not None and route(message.recipient) != message.recipient:
        problems.append(f"recipient {message.recipient!r} is not an offered tool")
    try:
        (back,) = enc.parse_messages_from_completion_tokens(tokens, None)
    except (HarmonyError, ValueError) as exc:
        return [*problems, f"does not parse back: {exc}"]
    recipient = back.recipient
    if recipient and recipient.startswith("<|constrain|>"):  # harmony reads a structured final's type as a recipient
        recipient = None
    if (back.channel, recipient, message_text(back)) != (message.channel, message.recipient, text):
        problems.append("does not parse back to the same header and text")
    return problems
