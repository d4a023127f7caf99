"""Transformers backend: streaming overhead and prefix reuse, on a tiny random gpt-oss model.

1. Streaming: our backend (forward loop in a worker thread, ids streamed to the
   event loop) against a plain greedy `model.generate` call with the same model,
   prompt and number of new tokens. Goal: ratio below 1.1.
2. Prefix reuse: a 10-step tool chain where each prompt extends the previous
   one. With reuse, each step prefills only what the cache has not seen: the
   new tokens (tool result and assistant header); the last sampled token is
   run through the model right after each stream ends.
   The reference is the same chain with reuse turned off.

Needs the `transformers` extra; CPU only; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from openai_harmony import Author, Conversation, Message, Role, SystemContent

from agent.backends.base import CompletionRequest, Usage
from agent.harmony.encoding import get_encoding, special_ids

STEPS = 10
RESULT = "Row {k}: revenue 1.2M, margin 14%, region north, status ok. " * 6


def _model():
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(0)
    config = GptOssConfig(
        vocab_size=201088,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=128,
        max_position_embeddings=131072,
    )
    return GptOssForCausalLM(config).eval()


def _prompt() -> list[int]:
    conv = Conversation.from_messages(
        [
            Message.from_role_and_content(Role.SYSTEM, SystemContent.new().with_conversation_start_date("2026-01-15")),
            Message.from_role_and_content(Role.USER, "Fetch the ten rows of the report, one call each, then sum up."),
        ]
    )
    return get_encoding().render_conversation_for_completion(conv, Role.ASSISTANT)


def _result(k: int) -> list[int]:
    msg = (
        Message.from_author_and_content(Author.new(Role.TOOL, "functions.fetch_row"), RESULT.format(k=k))
        .with_recipient("assistant")
        .with_channel("commentary")
    )
    return get_encoding().render(msg) + list(special_ids().assistant_header)


async def _stream(backend, prompt: list[int], new_tokens: int, stop: frozenset[int]) -> tuple[list[int], Usage]:
    ids: list[int] = []
    usage = Usage()
    async for item in backend.stream(CompletionRequest(prompt, stop, new_tokens)):
        if isinstance(item, Usage):
            usage = item
        else:
            ids += item
    return ids, usage


def _streaming_rows(model, repeats: int, new_tokens: int) -> list[dict]:
    import torch

    from agent.backends.transformers import TransformersBackend

    prompt = _prompt()
    inputs = torch.tensor([prompt])
    backend = TransformersBackend(model, temperature=0.0, reuse_prefix=False)

    async def main() -> tuple[list[float], list[float]]:
        ours, ref = [], []  # interleaved, so drifting machine load hits both alike
        await _stream(backend, prompt, 4, frozenset())  # warm-up: worker thread, allocator
        with torch.inference_mode():
            model.generate(inputs, max_new_tokens=4, do_sample=False)
        for _ in range(repeats):
            started = time.perf_counter()
            ids, _ = await _stream(backend, prompt, new_tokens, frozenset())
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(inputs, max_new_tokens=new_tokens, do_sample=False)
            ref.append(time.perf_counter() - started)
            assert out[0, len(prompt) :].tolist() == ids, "streamed ids differ from model.generate"
        await backend.aclose()
        return ours, ref

    ours, ref = asyncio.run(main())
    mine, theirs = statistics.median(ours), statistics.median(ref)
    paired = statistics.median(a / b for a, b in zip(ours, ref))
    return [
        {
            "name": f"transformers stream, {new_tokens} new tokens, {len(prompt)}-token prompt (tiny model, CPU)",
            "median_ms": mine * 1e3,
            "spread_ms": (max(ours) - min(ours)) * 1e3,
            "reference": "model.generate, greedy, same prompt (ratio: median of paired runs)",
            "reference_ms": theirs * 1e3,
            "ratio_vs_reference": paired,
        }
    ]


def _chain(backend, new_tokens: int) -> list[tuple[int, int, int]]:
    """Run the chain; per step: (prompt tokens, cached, new since the previous step)."""

    async def main():
        prompt, seen, rows = _prompt(), 0, []
        for k in range(STEPS):
            ids, usage = await _stream(backend, prompt, new_tokens, special_ids().stops)
            rows.append((usage.prompt_tokens, usage.cached_prompt_tokens, len(prompt) - seen))
            seen = len(prompt) + len(ids)
            prompt = prompt + ids + ([] if ids and ids[-1] == special_ids().call else [special_ids().call])
            prompt += _result(k)
        await backend.aclose()
        return rows

    return asyncio.run(main())


def _reuse_rows(model, repeats: int, new_tokens: int) -> list[dict]:
    from agent.backends.transformers import TransformersBackend

    with_reuse, without = [], []
    rows: list[tuple[int, int, int]] = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = _chain(TransformersBackend(model, temperature=0.0), new_tokens)
        with_reuse.append(time.perf_counter() - started)
        started = time.perf_counter()
        _chain(TransformersBackend(model, temperature=0.0, reuse_prefix=False), new_tokens)
        without.append(time.perf_counter() - started)
    prefilled = [p - c for p, c, _ in rows]
    new = [n for _, _, n in rows]
    over = max(pf - n for pf, n in zip(prefilled[1:], new[1:]))
    mine, theirs = statistics.median(with_reuse), statistics.median(without)
    return [
        {
            "name": f"{STEPS}-step tool chain with prefix reuse ({rows[-1][0]} prompt tokens at the end)",
            "median_ms": mine * 1e3,
            "spread_ms": (max(with_reuse) - min(with_reuse)) * 1e3,
            "reference": "same chain, full prefill every step",
            "reference_ms": theirs * 1e3,
            "ratio_vs_reference": mine / theirs,
        },
        {"name": "prefilled tokens per step (with reuse)", "value": ", ".join(map(str, prefilled))},
        {"name": "cached tokens per step (with reuse)", "value": ", ".join(str(c) for _, c, _ in rows)},
        {"name": "new tokens per step (prompt growth beyond what was sampled)", "value": ", ".join(map(str, new))},
        {"name": "max prefilled minus new, steps 2+ (0 = only new tokens prefilled)", "value": over},
    ]


def run(quick: bool = False) -> list[dict]:
    model = _model()
    repeats = 5 if quick else 15
    new_tokens = 32 if quick else 128
    return _streaming_rows(model, repeats, new_tokens) + _reuse_rows(model, 2 if quick else 5, 8)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        print(row)
