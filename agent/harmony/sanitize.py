"""Neutralise text that spells Harmony special tokens.

Rendering keeps such text as ordinary tokens, but any text round trip (Ollama's
raw mode parses specials in prompt text) would turn it into real control tokens
and let a web page or tool output forge a `system` message. A zero-width space
after `<|` keeps the text readable and inert.
"""

from __future__ import annotations

import functools
import re

from agent.harmony.encoding import get_encoding

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
    return _CANDIDATE.sub(
        lambda m: "<|" + _ZWSP + m.group(0)[2:] if m.group(0) in specials else m.group(0), text
    )


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
