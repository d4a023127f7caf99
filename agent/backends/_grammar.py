"""A JSON schema as a token mask over the gpt-oss vocabulary, for in-process sampling (llguidance).

`SchemaMask(schema)` starts at the beginning of a final answer's body: `apply`
masks the logits to the tokens that keep the text a prefix of a valid
instance, `accept` advances by the sampled token. Harmony's specials are never
allowed inside the body; `<|return|>` only once the JSON is complete.

The token bytes come from o200k_base.tiktoken, found where openai-harmony
looks for it (`TIKTOKEN_ENCODINGS_BASE`). llguidance is imported on first use
(extra `structured`).
"""

from __future__ import annotations

import base64
import functools
import json
import os
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError
from agent.harmony.encoding import get_encoding, special_ids

VOCAB = 201088
FIRST_SPECIAL = 199998


@functools.cache
def _tokenizer() -> Any:
    try:
        import llguidance
    except ImportError:
        raise ConfigurationError(
            "constraining a structured answer in-process needs llguidance: pip install 'oss-agent[structured]'"
        ) from None

    enc = get_encoding()

    class _Vocabulary:
        def __init__(self) -> None:
            self.eos_token_id = special_ids().return_
            self.bos_token_id = None
            self.tokens = _token_bytes()
            self.special_token_ids = list(range(FIRST_SPECIAL, VOCAB))

        def __call__(self, text: str) -> list[int]:
            return enc.encode(text, allowed_special=set())

    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Vocabulary()))


def _token_bytes() -> list[bytes]:
    base = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    path = Path(base) / "o200k_base.tiktoken" if base else None
    if path is None or not path.is_file():
        raise ConfigurationError(
            "constraining in-process needs the token bytes of o200k_base.tiktoken: set TIKTOKEN_ENCODINGS_BASE "
            "to the folder that holds it"
        )
    tokens: list[bytes] = [b""] * VOCAB
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            tokens[int(rank)] = base64.b64decode(token)
    enc = get_encoding()
    for i in range(FIRST_SPECIAL, VOCAB):
        tokens[i] = enc.decode([i]).encode()
    return tokens


class SchemaMask:
    """The sampling constraint of one JSON body."""

    def __init__(self, schema: dict[str, Any]) -> None:
        import llguidance
        import llguidance.torch as llt

        tokenizer = _tokenizer()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": False}
        )
        self._matcher = llguidance.LLMatcher(tokenizer, grammar)
        if self._matcher.is_error():
            raise ConfigurationError(f"the output schema cannot be constrained: {self._matcher.get_error()}")
        self._bitmask = llt.allocate_token_bitmask(1, tokenizer.vocab_size)
        self._llt = llt

    def apply(self, logits: Any) -> Any:
        """`logits` (1-D, the vocabulary) with every disallowed token at -inf."""
        self._llt.fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        row = logits.unsqueeze(0).float().clone()
        self._llt.apply_token_bitmask_inplace(row, self._bitmask.to(row.device))
        return row[0]

    def accept(self, token: int) -> None:
        if token != special_ids().return_:
            self._matcher.consume_token(token)
