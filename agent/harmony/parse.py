"""Read a streamed completion into messages, with Harmony's own parser.

`CompletionParser` takes the sampled token ids one at a time. It splits them
into messages at the Harmony markers (rules P1-P8 below), reads each header
with the rules in `header.py` (H1-H12, R1-R7), and parses each message with
openai-harmony's `StreamableParser` from a canonical header, so the content
(and its UTF-8 handling) is exactly Harmony's. It reports content deltas as
they arrive, labelled by what they are, and says when the completion is over:
at a final answer or a stop token, or at whatever follows a call that is not
another call. Anything written after that is an invented continuation and is
ignored.

`finish()` returns a `Reading`: the usable messages, the tokens that stand for
them in the next prompt of a tool chain, and the reason the completion was not
fully usable, if it was not. Unusable messages are dropped, never kept.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Literal

from openai_harmony import HarmonyError, Message, Role, StreamableParser

from agent.harmony.encoding import get_encoding, special_ids
from agent.harmony.header import CHANNELS, Header, HeaderError, RecipientReader, read_header, sampled_header

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
    spans: list[list[int]] = field(default_factory=list)  # each message's own tokens in `tokens`

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


_BETWEEN = {"assistant", *CHANNELS}  # stray words a missing `<|start|>assistant<|channel|>` leaves between messages
_MAX_STRAY = 64  # tokens of stray text between messages worth holding before giving up on them
_STRIPPED = re.compile(r"assistant(analysis|commentary|final)")  # `<|end|><|start|>assistant<|channel|>X<|message|>`
_STRIPPED_HEAD = re.compile(r"\s*(?:assistant)?(analysis|commentary|final)")


@functools.cache
def _is_special(token: int) -> bool:
    return bool(get_encoding().is_special_token(token))


class _Open:
    """The message being read."""

    def __init__(self, first: bool) -> None:
        self.first = first  # the completion's first message (its role is in the prompt)
        self.header: list[int] = []
        self.content: list[int] = []
        self.in_content = False
        self.has_message = False  # the header ended at `<|message|>`
        self.read: Header | None = None
        self.error: str | None = None
        self.stream: StreamableParser | None = None
        self.stopped = False  # reading stopped inside this message's header


class CompletionParser:
    """Incremental reader for one sampling pass (the tokens after `<|start|>assistant`).

    The rules for splitting a completion into messages, on top of `header.py`'s
    for each header:

    - P1 (harmony): a message ends at `<|end|>`, `<|call|>` or `<|return|>`; the
      completion is over at a final answer or `<|return|>`.
    - P2 (harmony #68, vLLM, sglang): a server that does not stop at `<|call|>`
      may send several complete calls; each is kept and run in order. After a
      call, only further calls are read: any other message was written without
      the tool's result, so it and everything after it are ignored.
    - P3 (vLLM): `<|end|>` followed by `<|channel|>` is a new message whose
      `<|start|>assistant` is missing; stray words a missing marker leaves
      (`assistant`, `commentary`) are skipped. Any other text between messages
      stops the reading there (vLLM keeps what came before).
    - P4 (harmony): `<|start|>` inside content means the `<|end|>` was missing.
    - P5 (sglang): text before the completion's first `<|start|>` is a preamble;
      a lone `<|end|>` before anything is skipped.
    - P6 (vLLM, sglang, llama.cpp #25321): a completion without any Harmony
      marker comes from a server that dropped the special tokens, or is bare
      text: `analysisTHINKINGassistantfinalANSWER` gives the reasoning and the
      answer, bare text is the answer. A call cannot be read safely from such
      text and is never run.
    - P7 (vLLM-MLX #562): a call whose JSON is still open when the stream ends
      was cut, not made.
    - P8 (llama.cpp): a recipient-less commentary that ends the completion is
      the answer.
    """

    def __init__(self, recipients: RecipientReader = _as_is) -> None:
        self._recipients = recipients
        self._ids = special_ids()
        self.tokens: list[int] = []
        self.done = False  # the completion is over; later tokens are ignored
        self._open: _Open | None = _Open(first=True)
        self._kept: list[tuple[Message, list[int]]] = []
        self._problem: str | None = None
        self._ended_on_kept = False  # the last thing read was a complete, usable message
        self._called = False  # a complete call was kept (P2)
        self._between: list[int] = []  # stray tokens between two messages (P3)
        self._marked = False  # a Harmony special token was seen (P6)

    # -- streaming ------------------------------------------------------------

    def feed(self, token: int) -> Delta | None:
        """Process one token; return the content it added, if any."""
        if self.done:
            return None
        self.tokens.append(token)
        if not self._marked and _is_special(token):
            self._marked = True
        ids, current = self._ids, self._open
        if current is None:
            self._feed_between(token)
            return None
        if not current.in_content:
            self._feed_header(current, token)
            return None
        if token in (ids.end, ids.call, ids.return_):
            self._close(current, token)
        elif token == ids.start:  # P4
            self._close(current, ids.end)
            if not self.done:
                self._open = _Open(first=False)
        else:
            return self._feed_content(current, token)
        return None

    def _feed_between(self, token: int) -> None:
        ids = self._ids
        if token in (ids.start, ids.channel):  # P3
            stray = get_encoding().decode(self._between).strip()
            self._between = []
            if stray and stray not in _BETWEEN:
                self._stop(f"text between two messages: {stray[:40]!r}")
                return
            self._open = _Open(first=False)
            if token == ids.channel:
                self._open.header.append(token)
        elif token in ids.stops:
            self.done = True  # `<|end|><|return|>`, `<|end|><|call|>`: nothing more (P1)
        elif _is_special(token) or len(self._between) >= _MAX_STRAY:
            self._stop(f"unexpected token {token} between messages")
        else:
            self._between.append(token)

    def _feed_header(self, current: _Open, token: int) -> None:
        ids = self._ids
        if token == ids.message:
            current.in_content = current.has_message = True
            self._begin(current)
        elif token == ids.end and not current.header:
            self._open = None  # P5: an empty message (a lone `<|end|>`) is nothing
        elif token in (ids.end, ids.call, ids.return_):  # no `<|message|>`: harmony's non-strict reading (H12)
            current.in_content = True
            self._begin(current)
            self._close(current, token)
        elif token == ids.start:
            text = self._header_text(current)
            if text.strip() == "assistant" or (current.first and not current.header):
                current.header = []  # H8: `<|start|>assistant` repeated
            elif current.first and not any(map(_is_special, current.header)) and "to=" not in text:
                self._keep_text(text, "commentary")  # P5
                self._open = _Open(first=False)
            else:
                self._stop("a stray <|start|> in a message header")
        else:
            current.header.append(token)

    def _header_text(self, current: _Open) -> str:
        return get_encoding().decode(current.header)

    def _begin(self, current: _Open) -> None:
        """The header is complete: read it and open Harmony's parser on its canonical form."""
        text = self._header_text(current)
        if not current.first:
            word = re.split(r"\s|<\|", text.lstrip(), maxsplit=1)[0]
            if word and word != "assistant" and not word.startswith("to="):  # H8: an empty role is the assistant
                current.stopped = True  # a message from another role: the model is inventing a reply
                self._stop(f"the model wrote a message as {word!r}")
                return
        try:
            current.read = read_header(text, self._recipients, has_message=current.has_message)
        except HeaderError as exc:
            current.error = str(exc)
            return
        if self._called and not current.read.recipient:  # P2: written without the tool's result
            current.stopped = True
            self._stop("a message after a call")
            return
        enc, header = get_encoding(), current.read
        canonical = sampled_header(header.channel, header.recipient, header.content_type)
        current.stream = StreamableParser(enc, Role.ASSISTANT)
        try:
            for tok in enc.encode(canonical, allowed_special="all") + [self._ids.message]:
                current.stream.process(tok)
            if header.leftover:
                for tok in enc.encode(header.leftover, disallowed_special=()):
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
        """A message ended (at `terminator`): keep it if usable; a final answer ends the completion."""
        if current.stopped:
            return
        self._open = None
        message = self._message(current)
        if message is None:
            if self._called:  # P2: a broken message after complete calls ends the reading, harmlessly
                self.done = True
                return
            self._problem = self._problem or f"unusable message: {current.error}"
            self._ended_on_kept = False
        else:
            self._kept.append((message, self._span(current, message)))
            self._ended_on_kept = True
            if message.recipient:
                self._called = True
            elif message.channel == "final":
                self.done = True
        if terminator == self._ids.return_ or (terminator == self._ids.call and not self._called):
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

    def _keep_text(self, text: str, channel: str) -> None:
        """Keep `text` as a message of `channel` that had no (readable) header."""
        text = text.strip()
        if not text:
            return
        enc = get_encoding()
        message = Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)
        head = enc.encode(sampled_header(channel, None, None), allowed_special="all")
        body = enc.encode(text, disallowed_special=())
        self._kept.append((message, head + [self._ids.message] + body + [self._ids.end]))
        self._ended_on_kept = True

    def _stop(self, reason: str) -> None:
        self._open = None
        self.done = True
        if not self._called:  # after complete calls nothing read later matters (P2)
            self._problem = self._problem or reason
            self._ended_on_kept = False

    # -- the end ---------------------------------------------------------------

    def finish(self, *, cut: bool = False) -> Reading:
        """Close the stream. `cut`: the backend says the token budget or the context ended it."""
        current = self._open
        if self._called:  # P2: complete calls were read; a last one the stream ended is kept if it is whole
            if current is not None and current.in_content and not cut and not _json_left_open(current):
                self._close(current, self._ids.call)
            self._open, current, cut = None, None, False
        cut = cut and not self.done
        if not self._marked and self.tokens and not cut:
            self._read_stripped()  # P6
        elif current is not None and not self.done:
            if cut:
                self._open = None
                self._ended_on_kept = False
            elif not current.in_content:
                if not current.header or current.stopped:
                    self._problem = self._problem or ("the completion was empty" if current.first else None)
                    self._open = None
                else:
                    current.in_content = True
                    self._begin(current)
                    self._close(current, self._ids.end)
            elif current.read is not None and current.read.recipient and _json_left_open(current):
                self._open = None
                self._problem = "the call's arguments end mid-JSON; treated as cut"  # P7
                self._ended_on_kept = False
            else:
                self._close(current, self._ids.end)
        if cut:
            self._problem = "the completion was cut at the token budget or the context window"
        messages = [m for m, _ in self._kept]
        last = messages[-1] if messages else None
        if last is not None and not cut and self._ended_on_kept and last.channel == "commentary" and not last.recipient:
            last.channel = "final"  # P8
        spans = [span for _, span in self._kept]
        tokens: list[int] = []
        for i, span in enumerate(spans):
            if i:
                tokens += self._ids.assistant_header
            tokens += span
        return Reading(messages, tokens, None if self._usable(last) else self._problem, cut, spans)

    def _read_stripped(self) -> None:
        """P6: no Harmony marker at all. Split at what the dropped markers leave (`…assistantfinal…`)."""
        self._open = None
        text = get_encoding().decode(self.tokens)
        pieces = _STRIPPED.split(text)
        head, sections = pieces[0], list(zip(pieces[1::2], pieces[2::2], strict=True))
        named = _STRIPPED_HEAD.match(head)
        after = head[named.end() : named.end() + 1] if named else ""
        if named and (sections or (after and not after.isspace() and not after.islower())):
            sections.insert(0, (named.group(1), head[named.end() :]))  # `analysisThe user asks…`
        elif head.strip():
            sections.insert(0, ("analysis" if sections else "final", head))  # bare text is the answer
        for channel, body in sections:
            if channel == "commentary" and body.lstrip().startswith("to="):
                self._problem = (
                    "the server removed Harmony's special tokens, so a tool call cannot be read safely; "
                    "have it keep them (llama-server: --special; vLLM and sglang: skip_special_tokens=false)"
                )
                self._ended_on_kept = False
                return
            self._keep_text(body, channel)
            if channel == "final":
                break
        if not self._kept:
            self._problem = "the completion was empty"

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
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True  # `\"` outside a string is an over-escaped quote (repaired later), never one that opens
        elif in_string:
            if ch == '"':
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
