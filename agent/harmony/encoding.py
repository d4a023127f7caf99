"""The Harmony encoding, loaded once per process, and the token ids the loop needs."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from openai_harmony import (
    Conversation,
    HarmonyEncoding,
    HarmonyEncodingName,
    Role,
    load_harmony_encoding,
)

from agent.errors import VocabularyError


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
def get_encoding() -> HarmonyEncoding:
    """Load the gpt-oss Harmony encoding (cached; it is immutable)."""
    try:
        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception as exc:  # HarmonyError: download failed or file unreadable
        where = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
        hint = (
            f"TIKTOKEN_ENCODINGS_BASE={where} does not hold a valid o200k_base.tiktoken"
            if where
            else "set TIKTOKEN_ENCODINGS_BASE to a folder that holds o200k_base.tiktoken "
            "(this machine could not download it)"
        )
        raise VocabularyError(f"cannot load the Harmony vocabulary: {hint} ({exc})") from exc


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
