"""The cost of constraining a structured final answer to its schema.

1. llama-server (real, tiny random-weights gpt-oss GGUF): decode tokens/s of
   a final answer's body, continued from `<|channel|>final <|constrain|>json<|message|>`,
   without and with the schema as `json_schema`, as the server's own timings
   report them. The ratio is unconstrained / constrained time per token.
2. In-process grammar libraries (whichever of xgrammar and llguidance import):
   milliseconds per token to compute the schema's token mask over the 201,088-id
   gpt-oss vocabulary, apply it to the logits and advance, on a random walk
   through valid tokens; next to it the cost of sampling from the same logits
   unconstrained.

Needs the llama-server binary and converter (`. .ci/llama_server.sh`) and the
transformers extra (to build the GGUF).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny GGUF and server helpers

VOCAB = 201088
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "level": {"enum": ["low", "high"], "type": "string"},
        "note": {"type": "string", "maxLength": 24},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["ok", "level", "note", "score"],
    "additionalProperties": False,
}


def _prompt() -> list[int]:
    """A prompt with the schema as its response format, ending where a final answer's body starts."""
    from agent.backends._final import final_header_ids
    from agent.harmony.render import PromptSettings, render_turn

    settings = PromptSettings(date="2025-01-01", response_format="## verdict\n\n" + json.dumps(SCHEMA))
    return render_turn(settings, []) + final_header_ids()


def _server_rows(quick: bool) -> list[dict]:
    import tiny_gguf
    from llama_server import serve

    prompt, repeats, length = _prompt(), (1 if quick else 8), (16 if quick else 48)
    per_token: dict[str, list[float]] = {"unconstrained": [], "constrained": []}
    with serve(tiny_gguf.random_weights(), ctx=4096) as server, httpx.Client(timeout=600) as http:
        for seed in range(repeats):
            for label, extra in (("unconstrained", {}), ("constrained", {"json_schema": SCHEMA})):
                body = {
                    "prompt": prompt,
                    "n_predict": length,
                    "seed": seed,
                    "temperature": 1.0,
                    "top_k": 0,
                    "top_p": 1.0,
                    "min_p": 0.0,
                    "cache_prompt": True,
                    **extra,
                }
                timings = http.post(server.url + "/completion", json=body).json()["timings"]
                if timings.get("predicted_n"):
                    per_token[label].append(timings["predicted_ms"] / timings["predicted_n"])
    free, bound = statistics.median(per_token["unconstrained"]), statistics.median(per_token["constrained"])
    return [
        {
            "name": "llama-server decode ms/token, final body, unconstrained",
            "median_ms": free,
            "spread_ms": statistics.pstdev(per_token["unconstrained"]),
        },
        {
            "name": "llama-server decode ms/token, final body, json_schema",
            "median_ms": bound,
            "spread_ms": statistics.pstdev(per_token["constrained"]),
            "reference": "unconstrained",
            "reference_ms": free,
            "ratio_vs_reference": bound / free,
        },
        {
            "name": "llama-server tokens/s unconstrained / json_schema",
            "value": f"{1000 / free:.1f} / {1000 / bound:.1f}",
        },
    ]


def _token_bytes() -> list[bytes]:
    import tiny_gguf

    from agent.harmony.encoding import get_encoding

    by_id = {rank: token for token, rank in tiny_gguf._read_ranks(tiny_gguf._vocab_file()).items()}
    enc = get_encoding()
    return [by_id[i] if i in by_id else enc.decode([i]).encode() for i in range(VOCAB)]


def _walk(mask: Any, advance: Any, steps: int) -> list[float]:
    import torch

    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps):
        logits = torch.randn(1, VOCAB, generator=generator)
        started = time.perf_counter()
        token = int(torch.argmax(mask(logits)))
        if not advance(token):
            break
        times.append(time.perf_counter() - started)
    return times[1:]  # the first mask also builds the library's lazy tables


def _library_rows(quick: bool) -> list[dict]:
    from agent.harmony.encoding import special_ids

    steps, end = (20 if quick else 200), special_ids().return_
    tokens = _token_bytes()
    results: dict[str, list[float]] = {"unconstrained sampling": _walk(lambda logits: logits, lambda t: True, steps)}
    try:
        import xgrammar as xgr
    except ImportError:
        pass
    else:
        info = xgr.TokenizerInfo(tokens, vocab_type=xgr.VocabType.RAW, vocab_size=VOCAB, stop_token_ids=[end])
        matcher = xgr.GrammarMatcher(xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA)))
        bitmask = xgr.allocate_token_bitmask(1, VOCAB)

        def xgr_mask(logits: Any) -> Any:
            matcher.fill_next_token_bitmask(bitmask)
            xgr.apply_token_bitmask_inplace(logits, bitmask)
            return logits

        results["xgrammar mask+advance"] = _walk(xgr_mask, lambda t: t != end and matcher.accept_token(t), steps)
    try:
        import llguidance
        import llguidance.torch as llt
    except ImportError:
        pass
    else:
        from agent.harmony.encoding import get_encoding

        class _Wrapper:
            eos_token_id, bos_token_id = end, None

            def __init__(self) -> None:
                self.tokens = tokens

            def __call__(self, text: bytes | str) -> list[int]:
                return get_encoding().encode(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)

        tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Wrapper()))
        lmatcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_json_schema(json.dumps(SCHEMA)))
        lbitmask = llt.allocate_token_bitmask(1, tokenizer.vocab_size)

        def llg_mask(logits: Any) -> Any:
            llt.fill_next_token_bitmask(lmatcher, lbitmask, 0)
            llt.apply_token_bitmask_inplace(logits, lbitmask)
            return logits

        results["llguidance mask+advance"] = _walk(llg_mask, lambda t: t != end and lmatcher.consume_token(t), steps)
    base = statistics.median(results["unconstrained sampling"]) * 1000
    rows = []
    for name, times in results.items():
        ms = [t * 1000 for t in times]
        row: dict[str, Any] = {
            "name": f"in-process ms/token, {name}",
            "median_ms": statistics.median(ms),
            "spread_ms": statistics.pstdev(ms),
        }
        if name != "unconstrained sampling":
            row.update(
                reference="unconstrained sampling", reference_ms=base, ratio_vs_reference=row["median_ms"] / base
            )
        rows.append(row)
    return rows


def run(quick: bool = False) -> list[dict]:
    return _library_rows(quick) + _server_rows(quick)
