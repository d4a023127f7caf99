"""Structured output through OpenAICompatibleBackend: a vLLM stream (respx), the body as a constrained continuation."""

from __future__ import annotations

import json

import httpx
import respx
from test_backend_openai import BASE, MODEL, render, run, serve, sse, vllm_events

from agent.backends._final import FINAL_HEADER, final_header_ids
from agent.backends.base import CompletionRequest
from agent.backends.openai_compat import OpenAICompatibleBackend
from agent.harmony.encoding import get_encoding, special_ids

SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
FREE = "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Plain words"


def ids(text: str) -> list[int]:
    return get_encoding().encode(text, allowed_special="all")


@respx.mock(base_url=BASE, assert_all_called=False)
def test_vllm_body_is_a_continuation_with_structured_outputs(respx_mock):
    reasoning = ids("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant")
    body = vllm_events('{"x": 7}', stop=special_ids().call)  # an end token other than <|return|> after the JSON
    body[-1]["usage"]["prompt_tokens"] = len(render() + reasoning + final_header_ids())  # as vLLM counts it
    route = serve(respx_mock)
    route.side_effect = [
        httpx.Response(
            200, content=sse(*vllm_events(FREE, per=1), b"[DONE]"), headers={"content-type": "text/event-stream"}
        ),
        httpx.Response(200, content=sse(*body, b"[DONE]"), headers={"content-type": "text/event-stream"}),
    ]
    request = CompletionRequest(render(), special_ids().stops, 1000, SCHEMA)
    got, usage = run(OpenAICompatibleBackend(base_url=BASE, model=MODEL), request)
    first, second = (json.loads(call.request.content) for call in route.calls)
    assert not {"structured_outputs", "json_schema", "logit_bias"} & first.keys()  # reasoning: unconstrained
    assert second["prompt"] == render() + reasoning + final_header_ids()
    assert second["structured_outputs"] == {"json": SCHEMA} and second["json_schema"] == SCHEMA
    assert "logit_bias" not in second  # llama-server would read its keys as text
    assert second["max_tokens"] == 1000 - len(reasoning) - len(final_header_ids())
    text = get_encoding().decode(got)
    assert text == f"<|channel|>analysis<|message|>Think.<|end|><|start|>assistant{FINAL_HEADER}" + '{"x": 7}<|return|>'
    assert usage is not None and usage.completion_tokens > 0


@respx.mock(base_url=BASE, assert_all_called=False)
def test_a_call_with_a_schema_is_one_unconstrained_request(respx_mock):
    call = "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}"
    route = serve(respx_mock, sse(*vllm_events(call, stop=special_ids().call), b"[DONE]"))
    got, _ = run(
        OpenAICompatibleBackend(base_url=BASE, model=MODEL),
        CompletionRequest(render(), special_ids().stops, 1000, SCHEMA),
    )
    assert len(route.calls) == 1 and "structured_outputs" not in json.loads(route.calls[0].request.content)
    assert got == ids(call) + [special_ids().call]
