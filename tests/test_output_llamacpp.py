"""Structured output against a real llama-server: the final body is grammar-constrained, the rest is not.

The scripted tiny model calls `lookup` and then, left alone, answers the plain
text `Done\u2028ok.`. With an output type the call is sampled exactly as
before, and once the model opens the final channel the body is continued
under the schema's grammar, so the answer validates on the first try.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

import pytest
import tiny_gguf
from llama_server import Server, serve
from pydantic import BaseModel, Field
from test_backend_llamacpp import lookup, make_backend  # the tool the scripted model calls

from agent import Agent
from agent.backends import LlamaCppBackend
from agent.backends._final import FINAL_HEADER
from agent.harmony.render import render_text

pytestmark = pytest.mark.llamacpp


class Verdict(BaseModel):
    ok: bool
    level: Literal["low", "high"]
    note: str = Field(max_length=8)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve(tiny_gguf.scripted(calls=1), ctx=4096) as running:
        yield running


@pytest.mark.parametrize(("kind", "seed"), [("native", 0), ("native", 1), ("openai-ids", 0)])
def test_final_body_follows_the_schema_while_the_call_is_sampled_freely(server, kind, seed):
    backend = make_backend(kind, server.url, seed=seed)
    agent = Agent(backend, tools=[lookup], date="2025-01-01", output_retries=0)
    try:
        events = list(agent.stream("Hi", output_type=Verdict))
        completion = render_text(agent.last_completion)
    finally:
        agent.close()
    result = events[-1].result  # type: ignore[union-attr]
    assert isinstance(result.output, Verdict)
    assert Verdict.model_validate(json.loads(result.raw_output)) == result.output
    assert [s.outcome for s in result.steps] == ["tool_call", "final"]  # valid on the first try
    assert result.tool_calls[0].call.arguments == tiny_gguf.ARGS  # the call came out as the model samples it
    assert completion.startswith(FINAL_HEADER) and completion.endswith("<|return|>")
    assert completion == f"{FINAL_HEADER}{result.raw_output}<|return|>"


def test_plain_runs_on_the_same_server_are_not_constrained(server):
    agent = Agent(LlamaCppBackend(server.url, seed=0), tools=[lookup], date="2025-01-01")
    try:
        result = agent.run("Hi")
    finally:
        agent.close()
    assert result.output == tiny_gguf.ANSWER
    assert render_text(agent.last_completion) == tiny_gguf.FINAL
