"""Structured output in-process (transformers + llguidance): the final body is masked to the schema, nothing else is."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest
from helpers import require_extra

require_extra("transformers,structured", "torch", "transformers", "llguidance")

import torch  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402
from test_backend_transformers import render, tiny_config  # noqa: E402
from transformers import GptOssForCausalLM  # noqa: E402

from agent.backends._final import FINAL_HEADER, final_header_ids
from agent.backends.base import CompletionRequest, Usage
from agent.backends.transformers import TransformersBackend
from agent.harmony.encoding import get_encoding, special_ids

pytestmark = pytest.mark.torch
SAMPLES = 100


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    level: Literal["low", "high"]
    note: str = Field(max_length=12)
    score: int = Field(ge=0, le=100)


SCHEMA = Reading.model_json_schema()


def ids(text: str) -> list[int]:
    return get_encoding().encode(text, allowed_special="all")


def sample(backend: TransformersBackend, prompt: list[int], max_tokens: int, schema=None) -> list[int]:
    async def main() -> list[int]:
        out: list[int] = []
        async for item in backend.stream(CompletionRequest(prompt, special_ids().stops, max_tokens, schema)):
            if not isinstance(item, Usage):
                out += item
        return out

    return asyncio.run(main())


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(1)
    return GptOssForCausalLM(tiny_config()).eval()


def test_random_weights_body_validates_every_time_and_reasoning_is_untouched(random_model):
    start = render("Rate it.") + ids("<|channel|>analysis<|message|>")
    free, constrained, bodies = (TransformersBackend(random_model, seed=7) for _ in range(3))
    valid = 0
    for _ in range(SAMPLES):
        reasoning = sample(constrained, start, 6, SCHEMA)
        assert reasoning == sample(free, start, 6)  # same seed: before a final opens, the schema changes nothing
        body_prompt = start + reasoning + ids("<|end|><|start|>assistant") + final_header_ids()
        body = sample(bodies, body_prompt, 120, SCHEMA)
        assert body[-1] == special_ids().return_
        Reading.model_validate(json.loads(get_encoding().decode(body[:-1])))
        valid += 1
    assert valid == SAMPLES


def test_the_same_bodies_unconstrained_are_not_json(random_model):
    body_prompt = render("Rate it.") + ids("<|channel|>analysis<|message|>x<|end|><|start|>assistant")
    body_prompt += final_header_ids()
    for seed in range(3):
        body = sample(TransformersBackend(random_model, seed=seed), body_prompt, 20)
        with pytest.raises(ValueError):
            json.loads(get_encoding().decode(body))


def test_scripted_model_opens_the_final_channel_and_the_body_follows_the_schema():
    from tiny_gguf import ARGS, TOOL, _script, config

    from agent import Agent, tool

    torch.manual_seed(0)
    scripted = GptOssForCausalLM(config()).eval()
    with torch.no_grad():
        _script(scripted, 1)  # a tool call, then (unconstrained) the plain answer `Done\u2028ok.`

    @tool(name=TOOL)
    def lookup(q: str) -> str:
        """Look q up."""
        return "42"

    agent = Agent(backend=TransformersBackend(scripted, seed=0), tools=[lookup], date="2025-01-01", output_retries=0)
    result = agent.run("Hi", output_type=Reading)
    assert isinstance(result.output, Reading)
    assert result.tool_calls[0].call.arguments == ARGS  # the call was sampled as without a schema
    completion = get_encoding().decode(agent.last_completion)
    assert completion == f"{FINAL_HEADER}{result.raw_output}<|return|>"
