"""Read a sampled Harmony message header the way the model meant it.

A header is the text between a message's role and `<|message|>`. gpt-oss
writes it in several shapes and slips in known ways; the peers that serve it
(openai-harmony itself, the gpt-oss reference server, vLLM, llama.cpp, Ollama,
sglang) each accept some slips and reject others. Every rule oss-agent applies
is below, named after the peer it follows. Where peers disagree, the rule takes
the reading that keeps the user safe: **a header openai-harmony rejects never
becomes a call and never becomes the answer.**

Accepted (each is read as shown, after the peer named):

- H1  `<|channel|>C to=R <|constrain|>json`, ` to=R<|channel|>C code`: channel C, a call to R (harmony)
- H2  `<|constrain|>json`, `<|constrain|> JSON `, ` json`, ` code`: that content type (harmony)
- H3  `<|channel|>final <|constrain|>json`: a structured final answer, no call (vLLM #45657)
- H4  `to=NAME` naming an offered function: `functions.NAME` (gpt-oss reference server)
- H5  `to=functions.NAMEjson` with `functions.NAME` offered: that call, JSON content (llama.cpp #15158)
- H6  `to=assistant`: no recipient (harmony)
- H7  `<|channel|>commentary to=assistant<|channel|>analysis`: the last channel wins (llama.cpp)
- H8  `<|start|>assistant` repeated, or an empty role (`<|start|><|channel|>`): assistant (harmony, sglang)
- H9  one unknown word after the recipient (`to=R abc`): ignored (Ollama)
- H10 a channel with junk glued on (`finalx`, `commentary?`): that channel (ai-dynamo #237, llama.cpp #27720)
- H11 `<|message|>` with no channel and no recipient: the final answer (Ollama)
- H12 no `<|message|>` (`<|channel|>final hi`, then the end): final "hi" (harmony's non-strict parser, #82)

Rejected (`HeaderError`: never run, never shown as the answer):

- R1  two recipients (`to=x to=functions.f`): harmony, "unexpected tokens remaining in message header"
- R2  two unknown words, one before the recipient or beside a content type, or a word (a recipient too) after
      the content type: harmony
- R3  a call header or a commentary header that never reaches `<|message|>`: harmony raises at EOS, and
      the non-strict reading would turn a broken call (`commentary t o= …`) into words for the user
- R4  neither a channel nor `<|message|>` (`I must refuse<|end|>`): harmony strict
- R5  an empty channel, two content types, an unknown channel, two channels unless H7: harmony
- R6  `to=NS.M` / `to=WORD` naming nothing that is offered: llama.cpp drops such calls
- R7  a commentary header with one unknown word and no `to=`: harmony reads that word as a recipient

Rejected headers raise `HeaderError`; `parse.py` drops the message and, unless
a complete call or answer follows, the loop samples again with feedback and
ends in `ModelOutputError` after `output_retries`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CHANNELS = ("analysis", "commentary", "final")
CONTENT_TYPES = ("json", "code", "text")  # bare content-type words gpt-oss writes (compared case-insensitively)
RecipientReader = Callable[[str], "str | None"]  # a recipient as written -> the one to route, or None if not offered

_MARK = re.compile(r"(<\|channel\|>|<\|constrain\|>|<\|start\|>)")
_GLUED = "json"


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
    non-strict parser does (H12), unless R3 rejects the header.
    """
    channel: str | None = None
    targets: list[str] = []
    content_type: str | None = None
    unknown: list[str] = []  # words that are no part of a header
    after_type: list[str] = []  # words after the content type
    expect: str | None = None  # what the next word is, after a marker
    role_allowed = True
    stray_before_recipient = False  # an unknown word came before any `to=`
    channels = 0
    for piece in _MARK.split(text):
        if piece in ("<|channel|>", "<|constrain|>"):
            expect, role_allowed = piece, False
            continue
        if piece == "<|start|>":
            raise HeaderError("a stray <|start|> inside the header")
        words = piece.split()
        if expect == "<|constrain|>":
            if not words:
                raise HeaderError("<|constrain|> without a content type")
            if content_type is not None:
                raise HeaderError("two content types")  # R5
            content_type, words = "<|constrain|>" + words[0], words[1:]
        elif expect == "<|channel|>":
            if not words:
                raise HeaderError("an empty channel")  # R5
            channel, words = _channel(words[0]), words[1:]  # H7: a later channel replaces an earlier one
            channels += 1
        expect = None
        for word in words:
            if role_allowed and word == "assistant" and not targets and not unknown:
                continue  # H8: the role word of a repeated `<|start|>assistant`
            role_allowed = False
            if word.startswith("to=") and content_type is None:
                targets.append(word[3:])
            elif not has_message:
                unknown.append(word)  # H12: the message's text
            elif content_type is not None:
                after_type.append(word)  # R2, and a recipient after the content type
            elif word.lower() in CONTENT_TYPES and (channel is not None or targets):
                content_type = word  # H2: ` json`, ` code`
            else:
                unknown.append(word)
                stray_before_recipient = stray_before_recipient or not targets
    if expect == "<|channel|>":
        raise HeaderError("an empty channel")  # R5
    targets = [t for t in targets if t != "assistant"] if len(targets) == 1 else targets  # H6
    if len(targets) > 1:
        raise HeaderError(f"two recipients in one header: {' '.join('to=' + t for t in targets)}")  # R1
    recipient = targets[0] if targets else None
    if channels > 1 and (recipient is not None or channel == "commentary"):
        raise HeaderError("two channels in one header")  # R5: H7 only ever moves a message to analysis or final
    if not has_message:
        if channel is None:
            raise HeaderError("a message with neither a channel nor <|message|>")  # R4
        if recipient is not None or channel == "commentary":
            raise HeaderError("a header that never reached <|message|>")  # R3
        return _checked(channel, None, content_type, recipients, " ".join(unknown))
    if after_type or len(unknown) > 1 or (unknown and ((stray_before_recipient and recipient) or content_type)):
        raise HeaderError(f"unexpected words in the header: {' '.join(unknown + after_type)!r}")  # R2
    if unknown and recipient is None and channel != "final" and channel != "analysis":
        raise HeaderError(f"unexpected word in the header: {unknown[0]!r}")  # R7
    # H9: one unknown word beside a recipient (or on a channel that calls nothing) is ignored
    if channel is None:
        if recipient is None and unknown:
            raise HeaderError(f"unexpected word in the header: {unknown[0]!r}")
        channel = "commentary" if recipient is not None else "final"  # H11: `<|message|>` alone is the answer
    return _checked(channel, recipient, content_type, recipients, "")


def _channel(word: str) -> str:
    """H10: a known channel with junk glued on is that channel; any other word is kept (and rejected later)."""
    if word in CHANNELS:
        return word
    for name in CHANNELS:
        if word.startswith(name):
            return name
    return word


def _checked(
    channel: str, recipient: str | None, content_type: str | None, recipients: RecipientReader, leftover: str
) -> Header:
    if channel not in CHANNELS:
        raise HeaderError(f"unknown channel {channel!r}")  # R5
    if recipient is not None:
        routed = recipients(recipient)
        if routed is None:
            raise HeaderError(f"the model addressed {recipient!r}, which is not an offered tool")  # R6
        if content_type is None and routed != recipient and recipient.endswith(_GLUED):
            content_type = "<|constrain|>json"  # H5: the router cut the glued `json` off an offered name
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
