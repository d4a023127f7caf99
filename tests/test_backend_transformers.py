"""TransformersBackend on a tiny randomly initialised gpt-oss model (CPU, no download)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from helpers import require_extra

require_extra("transformers", "torch", "transformers")

import torch  # noqa: E402
from openai_harmony import Author, Conversation, Message, Role, SystemContent  # noqa: E402
from transformers import GptOssConfig, GptOssForCausalLM  # noqa: E402

from agent.backends.base import CompletionRequest, Usage
from agent.backends.transformers import TransformersBackend
from agent.errors import BackendError, ContextOverflowError, ModelNotFoundError
from agent.harmony.encoding import get_encoding, special_ids

pytestmark = pytest.mark.torch


def tiny_config(**overrides) -> GptOssConfig:
    settings = {
        "vocab_size": 201088,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "sliding_window": 16,
        "max_position_embeddings": 131072,
    }
    settings.update(overrides)
    return GptOssConfig(**settings)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GptOssForCausalLM(tiny_config()).eval()


def render(user: str) -> list[int]:
    conv = Conversation.from_messages(
        [
            Message.from_role_and_content(Role.SYSTEM, SystemContent.new().with_conversation_start_date("2026-01-15")),
            Message.from_role_and_content(Role.USER, user),
        ]
    )
    return get_encoding().render_conversation_for_completion(conv, Role.ASSISTANT)


def tool_result(text: str) -> list[int]:
    msg = (
        Message.from_author_and_content(Author.new(Role.TOOL, "functions.lookup"), text)
        .with_recipient("assistant")
        .with_channel("commentary")
    )
    return get_encoding().render(msg) + list(special_ids().assistant_header)


def req(prompt: list[int], max_tokens: int = 12, stop: frozenset[int] | None = None) -> CompletionRequest:
    return CompletionRequest(prompt, special_ids().stops if stop is None else stop, max_tokens)


async def collect(backend: TransformersBackend, request: CompletionRequest) -> tuple[list[list[int]], Usage]:
    chunks, usage = [], None
    async for item in backend.stream(request):
        if isinstance(item, Usage):
            usage = item
        else:
            assert usage is None
            chunks.append(item)
    assert usage is not None
    return chunks, usage


def flat(chunks):
    return [t for c in chunks for t in c]


def greedy(model, **kwargs) -> TransformersBackend:
    return TransformersBackend(model, temperature=0.0, **kwargs)


def chain(backend: TransformersBackend, steps: int, max_tokens: int = 8):
    """A tool chain: each prompt = previous prompt + completion + `<|call|>` + result + header."""

    async def main():
        prompt, out = render("Look up three things, one at a time."), []
        for k in range(steps):
            chunks, usage = await collect(backend, req(prompt, max_tokens))
            completion = flat(chunks)
            out.append((prompt, completion, usage))
            prompt = prompt + completion + [special_ids().call] + tool_result(f"result {k}: ok")
        await backend.aclose()
        return out

    return asyncio.run(main())


def test_greedy_stream_matches_model_generate(model):
    prompt = render("Say OK")
    backend = greedy(model)
    chunks, usage = asyncio.run(collect(backend, req(prompt, 20)))
    expected = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=20,
        do_sample=False,
        eos_token_id=sorted(special_ids().stops),
        pad_token_id=0,
    )[0, len(prompt) :].tolist()
    assert flat(chunks) == expected
    assert usage.prompt_tokens == len(prompt) and usage.cached_prompt_tokens == 0
    assert usage.completion_tokens == len(expected)
    assert usage.total_seconds >= usage.prompt_seconds >= 0


def test_prefix_reuse_gives_identical_greedy_output_and_prefills_only_new_tokens(model):
    reused = chain(greedy(model), steps=5)
    fresh = chain(greedy(model, reuse_prefix=False), steps=5)
    assert [c for _, c, _ in reused] == [c for _, c, _ in fresh]
    assert all(u.cached_prompt_tokens == 0 for _, _, u in fresh)
    assert reused[0][2].cached_prompt_tokens == 0
    for (prev_prompt, prev_completion, _), (prompt, _, usage) in itertools.pairwise(reused):
        assert prompt[: len(prev_prompt) + len(prev_completion)] == prev_prompt + prev_completion
        # the cache holds the previous prompt and every sampled token (the last one is run after the stream)
        assert usage.cached_prompt_tokens == len(prev_prompt) + len(prev_completion)
        new_tokens = len(prompt) - len(prev_prompt) - len(prev_completion)
        assert usage.prompt_tokens - usage.cached_prompt_tokens == new_tokens


def test_divergent_prompt_crops_the_cache_to_the_common_prefix(model):
    first, second = render("First question, about cats."), render("First question, about dogs.")
    backend, fresh = greedy(model), greedy(model, reuse_prefix=False)

    async def main():
        await collect(backend, req(first))
        got = await collect(backend, req(second))
        again = await collect(backend, req(second))  # identical prompt: all but one token reused
        want = await collect(fresh, req(second))
        return got, again, want

    (got, usage), (again, again_usage), (want, _) = asyncio.run(main())
    common = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    assert usage.cached_prompt_tokens == common
    assert again_usage.cached_prompt_tokens == len(second) - 1
    assert flat(got) == flat(want) == flat(again)


def test_stops_on_a_stop_token_and_yields_it(model):
    prompt = render("Stop early")
    backend = greedy(model)
    free = flat(asyncio.run(collect(backend, req(prompt, 10, stop=frozenset())))[0])
    stop_at = free[3]
    cut = flat(asyncio.run(collect(greedy(model), req(prompt, 10, stop=frozenset({stop_at}))))[0])
    assert cut == free[: free.index(stop_at) + 1]


def test_budget_and_backend_cap(model):
    prompt = render("Count")
    assert len(flat(asyncio.run(collect(greedy(model), req(prompt, 5, frozenset())))[0])) == 5
    capped = greedy(model, max_completion_tokens=3)
    assert capped.max_completion_tokens == 3
    assert len(flat(asyncio.run(collect(capped, req(prompt, 50, frozenset())))[0])) == 3


def test_closing_the_stream_early_stops_generation_and_keeps_the_cache_consistent(model):
    prompt = render("Long answer please")
    backend = greedy(model)

    async def main():
        stream = backend.stream(req(prompt, 400, frozenset()))
        first = await stream.__anext__()
        await stream.aclose()
        stopped_at = len(backend._cache_ids)
        chunks, usage = await collect(backend, req(prompt, 12))
        return first, stopped_at, flat(chunks), usage

    first, stopped_at, after, usage = asyncio.run(main())
    assert first and stopped_at < len(prompt) + 400
    assert usage.cached_prompt_tokens == len(prompt) - 1
    want = flat(asyncio.run(collect(greedy(model), req(prompt, 12)))[0])
    assert after == want


def test_seeded_sampling_is_repeatable(model):
    prompt = render("Roll dice")
    runs = [
        flat(asyncio.run(collect(TransformersBackend(model, seed=3, top_p=0.9), req(prompt, 10, frozenset())))[0])
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and len(runs[0]) == 10


def test_context_window_and_overflow(model):
    backend = greedy(model, context_window=20)
    assert backend.context_window == 20
    with pytest.raises(ContextOverflowError):
        asyncio.run(collect(backend, req(render("too long for twenty tokens"))))
    assert greedy(model).context_window == 131072  # from the model config


def test_loads_from_a_local_path(model, tmp_path):
    model.save_pretrained(tmp_path)
    backend = TransformersBackend(str(tmp_path), temperature=0.0)
    assert backend.context_window == 131072
    prompt = render("hi")
    got = flat(asyncio.run(collect(backend, req(prompt)))[0])
    assert got == flat(asyncio.run(collect(greedy(model), req(prompt)))[0])


def test_missing_model_path(tmp_path):
    backend = TransformersBackend(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError):
        asyncio.run(collect(backend, req(render("hi"))))


def test_rejects_a_model_without_the_harmony_vocabulary():
    torch.manual_seed(0)
    small = GptOssForCausalLM(tiny_config(vocab_size=1000)).eval()
    with pytest.raises(BackendError, match="vocabulary"):
        asyncio.run(collect(TransformersBackend(small), req(render("hi"))))


def test_a_model_with_an_8192_token_context_answers_through_the_agent_with_the_default_budget():
    from tiny_gguf import ANSWER, TOOL, _script, config

    from agent import Agent, tool

    settings = config()
    settings.max_position_embeddings = 8192
    torch.manual_seed(0)
    scripted = GptOssForCausalLM(settings).eval()
    with torch.no_grad():
        _script(scripted, 1)  # a tool call, then the answer once the result is in the prompt

    @tool(name=TOOL)
    def lookup(q: str) -> str:
        """Look q up."""
        return "42"

    backend = TransformersBackend(scripted)
    assert backend.context_window == 8192
    agent = Agent(backend=backend, tools=[lookup], date="2025-01-01")
    result = agent.run("Hi")
    assert result.output == ANSWER
    assert [r.call.name for r in result.tool_calls] == [TOOL]
