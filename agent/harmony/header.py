"""Read a sampled Harmony message header the way the model meant it.

gpt-oss writes its headers in several shapes, and slips in known ways. Every
rule oss-agent applies is in this table; each was decided on raw completions
collected by other projects (llama.cpp, vLLM, openai/harmony, the gpt-oss
reference server), kept in the test data with their sources.

| The model wrote (header, after `<|start|>assistant`)     | Read as                                           |
|----------------------------------------------------------|---------------------------------------------------|
| `<|channel|>C to=R <|constrain|>json` (sampled order)     | channel C, recipient R, content type as written   |
| ` to=R<|channel|>C code` (rendered order)                 | the same                                          |
| `<|constrain|>json`, `<|constrain|> JSON `, ` json`       | that content type (`<|constrain|>JSON`, `json`)   |
| `<|channel|>final <|constrain|>json` (structured final)   | a final answer with that content type, no call   |
| `to=NAME` naming an offered function without `functions.` | `functions.NAME` (as the gpt-oss reference does)  |
| `to=functions.NAME`, `to=browser.M`, `to=python`          | a call (an unknown function gets an error result) |
| `to=NS.M` / `to=WORD` naming nothing that is offered      | unusable: dropped, the model samples again        |
| `to=assistant`                                            | not a call: no recipient                          |
| `<|channel|>commentary to=assistant<|channel|>analysis`   | the last channel wins (llama.cpp: common for 20b) |
| `<|start|>assistant` repeated before the header           | ignored                                           |
| `<|start|><|start|>…`, tokens after `<|end|>` before `<|start|>` | reading stops: earlier messages kept, resampled |
| no `<|message|>`: `<|channel|>final hi<|return|>`         | the words after the channel are its content       |
| no channel at all (`I must refuse<|end|>`)                | unusable: dropped                                 |
| an empty or unknown channel, two content types, a name with a space | unusable: dropped                        |

Terminators (`parse.py`): a message ends at `<|end|>`, `<|call|>` or
`<|return|>`; `<|return|>`/`<|call|>` right after `<|end|>` add nothing; the
completion is over once a call or a final answer is complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CHANNELS = ("analysis", "commentary", "final")
RecipientReader = Callable[[str], "str | None"]  # a recipient as written -> the one to route, or None if not offered

_MARK = re.compile(r"(<\|channel\|>|<\|constrain\|>|<\|start\|>)")


@dataclass(frozen=True)
class Header:
    """A header as the model meant it."""

    channel: str
    recipient: str | None = None
    content_type: str | None = None
    leftover: str = ""  # words after the header when `<|message|>` was missing: the message's text


class HeaderError(ValueError):
    """The header cannot be read as any known shape."""


def read_header(text: str, recipients: RecipientReader, *, has_message: bool = True) -> Header:
    """Read a header's text (what lies between the role and `<|message|>`).

    With `has_message=False` the message had no `<|message|>` marker: the words
    after the channel are returned as `leftover` (the content), as harmony's
    non-strict parser does.
    """
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    rest: list[str] = []
    expect: str | None = None  # what the next word is, after a marker
    for piece in _MARK.split(text):
        if piece in ("<|channel|>", "<|constrain|>"):
            expect = piece
            continue
        if piece == "<|start|>":
            raise HeaderError("a stray <|start|> inside the header")
        words = piece.split()
        if expect == "<|constrain|>":
            if not words:
                raise HeaderError("<|constrain|> without a content type")
            if content_type is not None:
                raise HeaderError("two content types")
            content_type, words = "<|constrain|>" + words[0], words[1:]
        elif expect == "<|channel|>":
            if not words:
                raise HeaderError("an empty channel")
            channel, words = words[0], words[1:]
        expect = None
        for word in words:
            if channel is None and content_type is None and word == "assistant" and not rest:
                continue  # the role word of a repeated `<|start|>assistant`
            if word.startswith("to="):
                target = word[3:]
                recipient = None if target == "assistant" else target
            elif rest or not has_message or channel is None or content_type is not None:
                rest.append(word)
            else:
                content_type = word  # ` json`, ` code`
    if expect == "<|channel|>":
        raise HeaderError("an empty channel")
    if not has_message:
        if channel is None:
            raise HeaderError("a message with neither a channel nor <|message|>")
        return _checked(channel, recipient, content_type, recipients, " ".join(rest))
    if rest:
        raise HeaderError(f"unexpected words in the header: {' '.join(rest)!r}")
    if channel is None:
        if recipient is None:
            raise HeaderError("a message with no channel")
        channel = "commentary"
    return _checked(channel, recipient, content_type, recipients, "")


def _checked(
    channel: str, recipient: str | None, content_type: str | None, recipients: RecipientReader, leftover: str
) -> Header:
    if channel not in CHANNELS:
        raise HeaderError(f"unknown channel {channel!r}")
    if recipient is not None:
        routed = recipients(recipient)
        if routed is None:
            raise HeaderError(f"the model addressed {recipient!r}, which is not an offered tool")
        recipient = routed
    return Header(channel, recipient, content_type, leftover)


def sampled_header(channel: str | None, recipient: str | None, content_type: str | None) -> str:
    """A header in the order gpt-oss samples it: `<|channel|>C to=R <|constrain|>json`."""
    text = f"<|channel|>{channel or 'commentary'}"
    if recipient:
        text += f" to={recipient}"
    if content_type:
        text += f" {content_type}"
    return text
