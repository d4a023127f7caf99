"""Text <-> Harmony token helpers for backends whose servers speak text.

`IncrementalTokenizer` turns streamed completion text back into token ids
without re-tokenising what was already converted: it holds back a tail that
could still grow into a special-token spelling (`<|cha` ...) or that ends in
half of a surrogate pair, and encodes only the released text.

`check_structure` is the guard for servers that re-tokenise the prompt text
with special-token parsing: the control tokens the server will see must be
exactly the ones we rendered, otherwise some text spells a forged marker.
"""

from __future__ import annotations

import functools

from agent.errors import BackendError
from agent.harmony.encoding import get_encoding


@functools.cache
def _marker_prefixes() -> frozenset[str]:
    """Every proper prefix (at least `<`) of every special-token spelling."""
    out: set[str] = set()
    for spelling in get_encoding().special_tokens_set:
        for i in range(1, len(spelling)):
            out.add(spelling[:i])
    return frozenset(out)


@functools.cache
def first_special_id() -> int:
    """Lowest special-token id; every id from here up is a Harmony/control token."""
    enc = get_encoding()
    return min(enc.encode(s, allowed_special="all")[0] for s in enc.special_tokens_set)


def _held_tail(text: str) -> int:
    """Length of the suffix of `text` that must wait for more text."""
    if text and "\ud800" <= text[-1] <= "\udbff":  # high surrogate waiting for its pair
        return 1
    start = text.rfind("<")
    if start != -1 and text[start:] in _marker_prefixes():
        return len(text) - start
    return 0


class IncrementalTokenizer:
    """Feed streamed text, get Harmony token ids for the part that is settled."""

    def __init__(self) -> None:
        self._enc = get_encoding()
        self._pending = ""

    def feed(self, text: str) -> list[int]:
        if not text:
            return []
        buf = self._pending + text
        held = _held_tail(buf)
        ready, self._pending = (buf[:-held], buf[-held:]) if held else (buf, "")
        return self._encode(ready)

    def flush(self) -> list[int]:
        """Release whatever is still held (the stream has ended)."""
        rest, self._pending = self._pending, ""
        return self._encode(rest)

    def _encode(self, text: str) -> list[int]:
        if not text:
            return []
        if _has_surrogate(text):  # pairs split across JSON strings: join them, replace strays
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return self._enc.encode(text, allowed_special="all")


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def control_ids(ids: list[int]) -> list[int]:
    low = first_special_id()
    return [t for t in ids if t >= low]


def prompt_text(prompt: list[int]) -> tuple[str, int]:
    """Decode `prompt` for a text-only server and check its structure survives.

    Returns the text and the number of tokens a server with special-token
    parsing will see (for comparing with what the server reports). Raises
    `BackendError` if re-tokenising the text would change the control tokens.
    """
    enc = get_encoding()
    text = enc.decode(prompt)
    again = enc.encode(text, allowed_special="all")
    if control_ids(again) != control_ids(prompt):
        raise BackendError(
            "refusing to send the prompt as text: some message text spells a Harmony marker "
            "(neutralise untrusted text before building messages)"
        )
    return text, len(again)
