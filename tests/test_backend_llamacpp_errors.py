"""LlamaCppBackend's failure paths, against respx fakes in llama-server's shapes (the real server is in
test_backend_llamacpp.py)."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
import respx
from llama_server import collect

from agent.backends.llamacpp import LlamaCppBackend, resolve_url
from agent.errors import (
    BackendError,
    BackendUnavailableError,
    ContextOverflowError,
    ModelNotFoundError,
    OssAgentError,
)
from agent.harmony.encoding import get_encoding

BASE = "http://127.0.0.1:8080"
PROPS = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1, "model_path": "tiny.gguf"}
PROBE = "<|start|>assistant<|channel|>final<|message|>"
MODELS = {"object": "list", "data": [{"id": "tiny.gguf", "object": "model", "owned_by": "llamacpp"}]}  # as served


def fake(router, events=(), *, tokens=None, props=PROPS, status=200, body=None):
    router.get("/props").mock(return_value=httpx.Response(200, json=props))
    router.get("/v1/models").mock(return_value=httpx.Response(200, json=MODELS))
    harmony = get_encoding().encode(PROBE, allowed_special="all")
    router.post("/tokenize").mock(return_value=httpx.Response(200, json={"tokens": tokens or harmony}))
    content = body if body is not None else b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return router.post("/completion").mock(return_value=httpx.Response(status, content=content))


def run(backend: LlamaCppBackend, prompt: list[int] | None = None):
    return asyncio.run(collect(backend, prompt or [200006, 1428], 50))


def final(stop_type="eos", prompt_n=2, cache_n=0, **extra):
    return {
        "content": "",
        "tokens": [],
        "stop": True,
        "stop_type": stop_type,
        "timings": {"prompt_n": prompt_n, "cache_n": cache_n, "predicted_n": 3, "prompt_ms": 1.0, "predicted_ms": 2.0},
        **extra,
    }


@respx.mock(base_url=BASE, assert_all_called=False)
def test_request_shape_and_usage(respx_mock):
    route = fake(
        respx_mock,
        [
            {"content": "x", "tokens": [200005, 17196], "stop": False},
            {"content": "", "tokens": [200002], "stop": False},
            final(cache_n=0),
        ],
    )
    backend = LlamaCppBackend(BASE, seed=3)
    out, usage = run(backend)
    assert out == [200005, 17196, 200002]
    assert (usage.prompt_tokens, usage.cached_prompt_tokens, usage.completion_tokens) == (2, 0, 3)
    assert usage.finish_reason == "stop" and usage.prompt_seconds == pytest.approx(0.001)
    body = json.loads(route.calls.last.request.content)
    assert body["prompt"] == [200006, 1428] and body["return_tokens"] is True and body["cache_prompt"] is True
    sampling = {k: body[k] for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")}
    assert sampling == {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "seed": 3}
    assert body["n_predict"] == 50 and "model" not in body
    assert backend.context_window == 4096 and backend.max_completion_tokens == 2048


@respx.mock(base_url=BASE, assert_all_called=False)
def test_stop_id_ends_the_stream_even_if_the_server_goes_on(respx_mock):
    fake(respx_mock, [{"tokens": [200005, 200012, 5, 6], "stop": False}, {"tokens": [7], "stop": False}])
    out, usage = run(LlamaCppBackend(BASE))
    assert out == [200005, 200012] and usage.finish_reason == "stop"


@respx.mock(base_url=BASE, assert_all_called=False)
def test_limit_is_a_length_finish(respx_mock):
    fake(respx_mock, [{"tokens": [200005, 17196], "stop": False}, final("limit")])
    assert run(LlamaCppBackend(BASE))[1].finish_reason == "length"


@respx.mock(base_url=BASE, assert_all_called=False)
def test_token_outside_the_vocabulary(respx_mock):
    fake(respx_mock, [{"tokens": [200005, 201088], "stop": False}, final()])
    with pytest.raises(BackendError, match="201088.*outside the gpt-oss vocabulary"):
        run(LlamaCppBackend(BASE))


@respx.mock(base_url=BASE, assert_all_called=False)
def test_not_a_gpt_oss_model(respx_mock):
    fake(respx_mock, tokens=[1, 2, 3])
    with pytest.raises(ModelNotFoundError, match="not gpt-oss"):
        run(LlamaCppBackend(BASE))


@respx.mock(base_url=BASE, assert_all_called=False)
def test_not_a_llama_server(respx_mock):
    respx_mock.get("/props").mock(return_value=httpx.Response(404, text="404 page not found"))
    with pytest.raises(BackendError, match="does not answer like llama-server"):
        run(LlamaCppBackend(BASE))


@respx.mock(base_url=BASE, assert_all_called=False)
def test_server_side_context_error_and_prompt_too_long_locally(respx_mock):
    error = {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size",
            "type": "exceed_context_size_error",
        }
    }
    route = fake(respx_mock, status=400, body=json.dumps(error).encode())
    with pytest.raises(ContextOverflowError, match="exceeds the available context"):
        run(LlamaCppBackend(BASE))
    calls = route.call_count
    with pytest.raises(ContextOverflowError, match="4096-token context"):
        run(LlamaCppBackend(BASE), [200006] * 4096)
    assert route.call_count == calls  # refused before sending


@respx.mock(base_url=BASE, assert_all_called=False)
def test_stream_cut_and_garbage(respx_mock):
    fake(respx_mock, [{"tokens": [200005], "stop": False}])
    with pytest.raises(BackendError, match="without finishing"):
        run(LlamaCppBackend(BASE))
    respx_mock.routes.clear()
    fake(respx_mock, body=b"data: {not json\n\n")
    with pytest.raises(BackendError, match="unreadable"):
        run(LlamaCppBackend(BASE))


def test_nothing_listening_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(BackendUnavailableError) as err:
        run(LlamaCppBackend(url))
    assert url in str(err.value) and "llama-server -m" in str(err.value)
    assert isinstance(err.value, OssAgentError) and "\n" not in str(err.value)


def test_url_resolution(monkeypatch):
    monkeypatch.delenv("OSS_AGENT_LLAMACPP_URL", raising=False)
    assert resolve_url() == "http://localhost:8080"
    monkeypatch.setenv("OSS_AGENT_LLAMACPP_URL", "gpu-box:9000/")
    assert resolve_url() == "http://gpu-box:9000"
    assert resolve_url("http://h:8080/v1") == "http://h:8080"
