"""Cleaning training examples: broken text, exact duplicates, near duplicates.

- **Broken text**: lone surrogates, U+FFFD replacement characters, control
  characters other than tab and newlines, noncharacters, and mojibake (UTF-8
  read as Windows-1252, e.g. `CafÃ©`): such an example would teach the model
  the damage, so it is dropped.
- **Exact duplicates**: the same token ids twice (a session exported twice, a
  conversation copied): the later ones go.
- **Near duplicates**: MinHash (datasketch) over character 5-grams of the
  user's messages of the conversation up to the turn, with LSH at a Jaccard
  threshold (0.8 by default), compared across sessions: of conversations
  asking nearly the same things, the first one stays. The turns of one
  session never count as each other's duplicates (each adds a message), and a
  "Thanks!" after different questions is no duplicate either.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

from agent.errors import ConfigurationError
from tools.text import has_lone_surrogate

DEFAULT_THRESHOLD = 0.8
SHINGLE = 5
PERMUTATIONS = 128

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A lead byte of a UTF-8 sequence read as Windows-1252 (Â..ô) followed by continuation bytes read the same way.
_MOJIBAKE = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]+"
)


def text_problem(text: str) -> str | None:
    """What is broken in `text` (a short phrase), or None when it is clean."""
    if has_lone_surrogate(text):
        return "a lone surrogate"
    if "\ufffd" in text:
        return "a U+FFFD replacement character (text decoded with errors)"
    if match := _CONTROL.search(text):
        return f"a control character U+{ord(match.group()):04X}"
    for char in set(text):
        if unicodedata.category(char) == "Cn" and (0xFDD0 <= ord(char) <= 0xFDEF or ord(char) & 0xFFFE == 0xFFFE):
            return f"a noncharacter U+{ord(char):04X}"
    for match in _MOJIBAKE.finditer(text):
        try:
            match.group().encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        return f"mojibake ({match.group()!r} is UTF-8 read as Windows-1252)"
    return None


def exact_key(ids: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


class NearDuplicates:
    """Remembers texts; `seen(text, group)` says whether one at least as similar as the threshold came before
    from another group (a session)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigurationError(f"the near-duplicate threshold is a Jaccard similarity in (0, 1], not {threshold}")
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            raise ConfigurationError(
                'near-duplicate removal needs datasketch: pip install "oss-agent[finetune]" (or pass --keep-duplicates)'
            ) from None
        self._minhash = MinHash
        self._index = MinHashLSH(threshold=threshold, num_perm=PERMUTATIONS)
        self._groups: list[str | None] = []

    def seen(self, text: str, group: str | None = None) -> bool:
        """True when a near duplicate of `text` from another group (any, for None) was added before;
        otherwise `text` is added."""
        signature = self._minhash(num_perm=PERMUTATIONS)
        signature.update_batch(s.encode() for s in shingles(text))
        if any(group is None or self._groups[int(key)] != group for key in self._index.query(signature)):
            return True
        self._index.insert(str(len(self._groups)), signature)
        self._groups.append(group)
        return False


def shingles(text: str) -> set[str]:
    """Character 5-grams of the lower-cased text with whitespace collapsed (the whole text when shorter)."""
    flat = " ".join(text.lower().split())
    if len(flat) <= SHINGLE:
        return {flat}
    return {flat[i : i + SHINGLE] for i in range(len(flat) - SHINGLE + 1)}
