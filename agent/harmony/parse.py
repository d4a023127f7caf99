"""Parse a streamed completion with Harmony's own parser.

`CompletionParser` takes token ids one at a time, reports content deltas
labelled by what they are (reasoning, preamble, final text, tool arguments),
stops at the first tool call (anything the model writes after a call is an
invented, ungrounded continuation), and remembers how many tokens formed
complete messages so a failed parse can keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from openai_harmony import HarmonyError, Message, Role, StreamableParser, StreamState

from agent.harmony.encoding import get_encoding, special_ids

DeltaKind = Literal["reasoning", "preamble", "text", "arguments"]
KNOWN_PREFIXES = ("functions.", "browser.", "python")


@dataclass(frozen=True)
class Delta:
    kind: DeltaKind
    text: str


class MalformedCompletion(Exception):
    """The completion cannot be used; `messages`/`tokens` hold what was complete before the problem."""

    def __init__(self, reason: str, messages: list[Message], tokens: list[int]) -> None:
        super().__init__(reason)
        self.messages = messages
        self.tokens = tokens


class CompletionParser:
    """Incremental parser for one sampling pass (the text after `<|start|>assistant`)."""

    def __init__(self) -> None:
        self._parser = StreamableParser(get_encoding(), Role.ASSISTANT)
        self._ids = special_ids()
        self.tokens: list[int] = []
        self.complete_tokens = 0  # length of the token prefix made of complete messages
        self.done = False  # a call or the final answer has been completed

    def feed(self, token: int) -> Delta | None:
        """Process one token; return the content it added, if any."""
        parser = self._parser
        self.tokens.append(token)
        try:
            parser.process(token)
        except HarmonyError as exc:
            raise self._failure(str(exc)) from None
        if parser.state == StreamState.EXPECT_START:  # a message just ended
            self.complete_tokens = len(self.tokens)
            if token in self._ids.stops:
                self.done = True
            return None
        delta = parser.last_content_delta
        if not delta:
            return None
        if parser.current_recipient:
            return Delta("arguments", delta)
        channel = parser.current_channel
        if channel == "final":
            return Delta("text", delta)
        return Delta("preamble" if channel == "commentary" else "reasoning", delta)

    def finish(self) -> list[Message]:
        """Close the stream and return the normalised messages."""
        if self._parser.state != StreamState.EXPECT_START:
            try:
                self._parser.process_eos()
            except HarmonyError as exc:
                raise self._failure(str(exc)) from None
        messages = [normalize(m) for m in self._parser.messages]
        for i, message in enumerate(messages):
            if message is None:
                raise self._failure("the message header names no known tool or channel")
            if message.recipient:  # drop whatever the model invented after its call
                return messages[: i + 1]
        return messages  # type: ignore[return-value]

    def _failure(self, reason: str) -> MalformedCompletion:
        return MalformedCompletion(reason, list(self._parser.messages), self.tokens[: self.complete_tokens])


def normalize(message: Message) -> Message | None:
    """Repair the header slips gpt-oss is known to make; None when unusable."""
    recipient = message.recipient
    if recipient and recipient.startswith("<|constrain|>"):  # a structured final answer
        message.content_type, message.recipient = recipient, None
    elif recipient and recipient.startswith("<|start|>"):  # a repeated `<|start|>assistant`
        message.recipient = None
    recipient = message.recipient
    if recipient and "." not in recipient and not recipient.startswith(KNOWN_PREFIXES):
        return None  # free text in the header (`hello world<|message|>`), read as a recipient
    text = message_text(message)
    if not recipient and "<|start|>" in text and "<|message|>" in text:
        return None  # a missing `<|end|>` glued two messages together
    return message


def message_text(message: Message) -> str:
    """The text of a message's content."""
    return "".join(getattr(c, "text", "") for c in message.content)
