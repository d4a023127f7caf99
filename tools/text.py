"""Text from outside made safe for Harmony, and the vocabulary that says which spellings are special.

Every tool's output, every page and every user message is rendered into a
Harmony prompt. `clean_text` makes such text safe to render: valid Unicode
(lone surrogates become U+FFFD), no pathological runs for the tokenizer, and
no special-token spellings. Rendering keeps such spellings as ordinary tokens,
but any text round trip (Ollama's raw mode parses specials in prompt text)
would turn them into real control tokens and let a web page or tool output
forge a `system` message; a zero-width space after `<|` keeps the text
readable and inert.

`get_encoding()` loads the gpt-oss Harmony encoding once per process (offline:
from `TIKTOKEN_ENCODINGS_BASE`), for the agent's prompts and for tools that
count tokens (the browser pages by them).
"""

from __future__ import annotations

import functools
import os
import re

from openai_harmony import HarmonyEncoding, HarmonyEncodingName, load_harmony_encoding

from tools.errors import VocabularyError


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


_CANDIDATE = re.compile(r"<\|[^<>|\s]{1,64}\|>")
_ZWSP = "\u200b"


@functools.cache
def _specials() -> frozenset[str]:
    return frozenset(get_encoding().special_tokens_set)


def neutralize(text: str) -> str:
    """Return `text` with every special-token spelling made inert."""
    if "<|" not in text:
        return text
    specials = _specials()
    return _CANDIDATE.sub(lambda m: "<|" + _ZWSP + m.group(0)[2:] if m.group(0) in specials else m.group(0), text)


# Longest message text accepted before tokenisation (about 125k tokens of prose);
# past it the tokeniser spends seconds and openai-harmony can panic.
MAX_MESSAGE_CHARS = 500_000
# BPE on one run of non-space characters costs time quadratic in its length
# (250k characters of one letter: about 50 s); longer runs get a space.
MAX_RUN_CHARS = 2_000

_SURROGATE = re.compile("[\ud800-\udfff]")
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS + 1},}}")


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a surrogate code point of its own (not valid Unicode; cannot be encoded)."""
    return _SURROGATE.search(text) is not None


def valid_unicode(text: str) -> str:
    """`text` with every lone surrogate (undecodable input, broken escapes) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def break_long_runs(text: str) -> str:
    """Insert a space every `MAX_RUN_CHARS` characters into runs of non-space characters longer than that."""
    if len(text) <= MAX_RUN_CHARS:
        return text

    def split(match: re.Match[str]) -> str:
        run = match.group(0)
        return " ".join(run[i : i + MAX_RUN_CHARS] for i in range(0, len(run), MAX_RUN_CHARS))

    return _LONG_RUN.sub(split, text)


def clean_text(text: str) -> str:
    """Text from outside (users, tools, pages, the sandbox) made safe to render: valid Unicode,
    no special-token spellings, no pathological runs."""
    return neutralize(break_long_runs(valid_unicode(text)))
