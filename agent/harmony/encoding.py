"""The Harmony encoding, loaded once per process, and the token ids the loop needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from openai_harmony import Conversation, Role

from tools.text import get_encoding  # the vocabulary sits with the tools, which count tokens with it too


@dataclass(frozen=True)
class SpecialIds:
    """Token ids of the Harmony markers, read from the encoding itself."""

    start: int
    end: int
    message: int
    channel: int
    constrain: int
    call: int
    return_: int
    assistant_header: tuple[int, ...]  # `<|start|>assistant`, the tail of every completion prompt

    @property
    def stops(self) -> frozenset[int]:
        return frozenset((self.call, self.return_))


@functools.cache
def special_ids() -> SpecialIds:
    enc = get_encoding()

    def one(text: str) -> int:
        (tok,) = enc.encode(text, allowed_special="all")
        return tok

    header = enc.render_conversation_for_completion(Conversation.from_messages([]), Role.ASSISTANT)
    return SpecialIds(
        start=one("<|start|>"),
        end=one("<|end|>"),
        message=one("<|message|>"),
        channel=one("<|channel|>"),
        constrain=one("<|constrain|>"),
        call=one("<|call|>"),
        return_=one("<|return|>"),
        assistant_header=tuple(header),
    )
