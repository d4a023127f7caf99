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
