"""Read a streamed completion into messages, with Harmony's own parser.

`CompletionParser` takes the sampled token ids one at a time. It splits them
into messages at the Harmony markers, reads each header with the rules in
`header.py`, and parses each message with openai-harmony's `StreamableParser`
from a canonical header, so the content (and its UTF-8 handling) is exactly
Harmony's. It reports content deltas as they arrive, labelled by what they
are, and says when the completion is over: once a call or a final answer is
complete, or at a stop token. Anything written after that is an invented
continuation and is ignored.

`finish()` returns a `Reading`: the usable messages, the tokens that stand for
them in the next prompt of a tool chain, and the reason the completion was not
fully usable, if it was not. Unusable messages are dropped, never kept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from openai_harmony import HarmonyError, Message, Role, StreamableParser

from agent.harmony.encoding import get_encoding, special_ids
from agent.harmony.header import Header, HeaderError, RecipientReader, read_header, sampled_header

DeltaKind = Literal["reasoning", "preamble", "text", "arguments"]


@dataclass(frozen=True)
class Delta:
    kind: DeltaKind
    text: str


@dataclass
class Reading:
    """What one completion means."""

    messages: list[Message] = field(default_factory=list)  # usable messages, repaired headers
    tokens: list[int] = field(default_factory=list)  # the messages as the next chain prompt holds them
    problem: str | None = None  # why (part of) the completion was unusable
    cut: bool = False  # the completion was cut by the token budget or the context

    @property
    def last(self) -> Message | None:
        return self.messages[-1] if self.messages else None


def _as_is(recipient: str) -> str | None:
    return recipient


@functools.cache
def vocabulary_size() -> int:
    """One past the largest token id the Harmony vocabulary can decode."""
    enc, lo, hi = get_encoding(), 0, 1 << 20
    while lo < hi:  # the largest id that decodes
        mid = (lo + hi + 1) // 2
        try:
            enc.decode([mid])
            lo = mid
        except HarmonyError:
            hi = mid - 1
    return lo + 1


class _Open:
    """The message being read."""

    def __init__(self, first: bool) -> None:
        self.first = first  # the completion's first message (its role is in the prompt)
        self.header: list[int] = []
        self.content: list[int] = []
        self.in_content = False
        self.read: Header | None = None
        self.error: str | None = None
        self.stream: StreamableParser | None = None
        self.stopped = False  # the completion stopped inside this message's header


class CompletionParser:
    """Incremental reader for one sampling pass (the tokens after `<|start|>assistant`)."""

    def __init__(self, recipients: RecipientReader = _as_is) -> None:
        self._recipients = recipients
        self._ids = special_ids()
        self.tokens: list[int] = []
        self.done = False  # the completion is over; later tokens are ignored
        self._open: _Open | None = _Open(first=True)
        self._kept: list[tuple[Message, list[int]]] = []
        self._problem: str | None = None
        self._ended_on_kept = False  # the last thing read was a complete, usable message

    # -- streaming ------------------------------------------------------------

    def feed(self, token: int) -> Delta | None:
        """Process one token; return the content it added, if any."""
        if self.done:
            return None
        self.tokens.append(token)
        ids, current = self._ids, self._open
        if current is None:  # between messages
            if token == ids.start:
                self._open = _Open(first=False)
            elif token in ids.stops:
                self.done = True  # `<|end|><|return|>`, `<|end|><|call|>`: nothing more
            else:
                self._stop(f"unexpected token {token} between messages")
            return None
        if not current.in_content:
            return self._feed_header(current, token)
        if token in (ids.end, ids.call, ids.return_):
            self._close(current, token)
        elif token == ids.start:  # `<|end|>` missing: the message is over, a new one starts
            self._close(current, ids.end)
            if not self.done:
                self._open = _Open(first=False)
        else:
            return self._feed_content(current, token)
        return None

    def _feed_header(self, current: _Open, token: int) -> Delta | None:
        ids = self._ids
        if token == ids.message:
            current.in_content = True
            self._begin(current, self._header_text(current), has_message=True)
        elif token in (ids.end, ids.call, ids.return_):  # no `<|message|>`: harmony's non-strict reading
            current.in_content = True
            self._begin(current, self._header_text(current), has_message=False)
            self._close(current, token)
        elif token == ids.start:
            role = self._header_text(current).strip()
            if role == "assistant" or (current.first and not current.header):
                current.header = []  # `<|start|>assistant` repeated
            else:
                self._stop("a stray <|start|> in a message header")
        else:
            current.header.append(token)
        return None

    def _header_text(self, current: _Open) -> str:
        return get_encoding().decode(current.header)

    def _begin(self, current: _Open, text: str, *, has_message: bool) -> None:
        """The header is complete: read it and open Harmony's parser on its canonical form."""
        if not current.first:
            head = text.lstrip().partition(" ")[0]
            word = head.split("<|", 1)[0]
            if word != "assistant":  # a message from another role: the model is inventing a reply
                current.stopped = True
                self._stop(f"the model wrote a message as {word or 'an unknown role'!r}")
                return
        try:
            current.read = read_header(text, self._recipients, has_message=has_message)
        except HeaderError as exc:
            current.error = str(exc)
            return
        enc, header = get_encoding(), current.read
        canonical = sampled_header(header.channel, header.recipient, header.content_type)
        current.stream = StreamableParser(enc, Role.ASSISTANT)
        try:
            for tok in enc.encode(canonical, allowed_special="all") + [self._ids.message]:
                current.stream.process(tok)
            if header.leftover:
                for tok in enc.encode(header.leftover):
                    self._feed_content(current, tok)
        except HarmonyError as exc:
            current.error = f"harmony could not read the header: {exc}"

    def _feed_content(self, current: _Open, token: int) -> Delta | None:
        current.content.append(token)
        if current.stream is None or current.error:
            return None
        try:
            current.stream.process(token)
        except HarmonyError as exc:
            current.error = f"harmony could not read the message: {exc}"
            return None
        delta = current.stream.last_content_delta
        if not delta or current.read is None:
            return None
        if current.read.recipient:
            return Delta("arguments", delta)
        kind: DeltaKind = {"final": "text", "commentary": "preamble"}.get(current.read.channel, "reasoning")  # type: ignore[assignment]
        return Delta(kind, delta)

    def _close(self, current: _Open, terminator: int) -> None:
        """A message ended (at `terminator`): keep it if usable; a call or a final ends the completion."""
        if current.stopped:
            return
        self._open = None
        message = self._message(current)
        if message is None:
            self._problem = self._problem or f"unusable message: {current.error}"
            self._ended_on_kept = False
        else:
            self._kept.append((message, self._span(current, message)))
            self._ended_on_kept = True
            if message.recipient or message.channel == "final":
                self.done = True
        if terminator in self._ids.stops:
            self.done = True

    def _message(self, current: _Open) -> Message | None:
        if current.error or current.stream is None or current.read is None:
            return None
        try:
            current.stream.process(self._ids.end)
            (message,) = current.stream.messages
        except (HarmonyError, ValueError) as exc:
            current.error = f"harmony could not read the message: {exc}"
            return None
        message.channel = current.read.channel  # the header as read, not as harmony guessed it
        message.recipient = current.read.recipient
        message.content_type = current.read.content_type
        return message

    def _span(self, current: _Open, message: Message) -> list[int]:
        """The message as the next chain prompt holds it: the sampled tokens where they were canonical."""
        enc, ids, header = get_encoding(), self._ids, current.read
        assert header is not None
        canonical = enc.encode(
            sampled_header(header.channel, header.recipient, header.content_type), allowed_special="all"
        )
        written = current.header
        if written[:1] == [ids.assistant_header[-1]]:  # the role of a later (or repeated) `<|start|>assistant`
            written = written[1:]
        if written != canonical:
            written = canonical
        content = current.content
        return written + [ids.message] + content + [ids.call if message.recipient else ids.end]

    def _stop(self, reason: str) -> None:
        self._problem = self._problem or reason
        self._open = None
        self.done = True
        self._ended_on_kept = False

    # -- the end ---------------------------------------------------------------

    def finish(self, *, cut: bool = False) -> Reading:
        """Close the stream. `cut`: the backend says the token budget or the context ended it."""
        current = self._open
        cut = cut and not self.done
        if current is not None and not self.done:
            if cut:
                self._open = None
                self._ended_on_kept = False
            elif not current.in_content:
                if not current.header or current.stopped:
                    self._problem = self._problem or ("the completion was empty" if current.first else None)
                    self._open = None
                else:
                    current.in_content = True
                    self._begin(current, self._header_text(current), has_message=False)
                    self._close(current, self._ids.end)
            elif current.read is not None and current.read.recipient and _json_left_open(current):
                self._open = None
                self._problem = "the call's arguments end mid-JSON; treated as cut"
                self._ended_on_kept = False
            else:
                self._close(current, self._ids.end)
        if cut:
            self._problem = "the completion was cut at the token budget or the context window"
        messages = [m for m, _ in self._kept]
        last = messages[-1] if messages else None
        if (
            last is not None
            and not cut
            and self._ended_on_kept
            and last.channel == "commentary"
            and not last.recipient
        ):
            last.channel = "final"  # a recipient-less commentary that ends the completion is the answer
        tokens: list[int] = []
        for i, (_, span) in enumerate(self._kept):
            if i:
                tokens += self._ids.assistant_header
            tokens += span
        return Reading(messages, tokens, None if self._usable(last) else self._problem, cut)

    def _usable(self, last: Message | None) -> bool:
        """A complete call or final answer makes a dropped message before it harmless."""
        return self._problem is None or (
            last is not None and self._ended_on_kept and (bool(last.recipient) or last.channel == "final")
        )


def _json_left_open(current: _Open) -> bool:
    """A JSON payload whose brackets or string are still open: the text stops mid-value."""
    ctype = (current.read.content_type or "") if current.read else ""
    if "code" in ctype.lower():
        return False
    text = get_encoding().decode(current.content).strip()
    if not text.startswith(("{", "[")):
        return False
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_string or depth > 0


def message_text(message: Message) -> str:
    """The text of a message's content."""
    return "".join(getattr(c, "text", "") for c in message.content)
