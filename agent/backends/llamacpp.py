"""llama.cpp backend: llama-server's native `/completion`, token ids both ways.

The prompt goes out as token ids with `cache_prompt: true`, so the server
reuses its KV cache for the shared prefix and prefills only the new tokens;
`return_tokens: true` brings back the exact sampled ids, the stop token
included. Sampling is neutral (temperature 1, top_p 1, top_k 0, min_p 0, no
repetition penalties): llama.cpp's own defaults (top_k 40, min_p 0.05) are not
what gpt-oss was tuned for. The context window is read from `/props`.

This is the exact-ids path for every llama.cpp-based server.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from agent.backends._final import FinalWatch, other_ends, sampled
from agent.backends._http import (
    ServerBackend,
    check_ids,
    check_truncation,
    completion_budget,
    cut_at_stop,
    error_text,
    make_usage,
    read_json,
)
from agent.backends._sse import aiter_data
from agent.backends.base import DEFAULT_COMPLETION_TOKENS, CompletionRequest, Usage
from agent.errors import (
    BackendError,
    BackendUnavailableError,
    ContextOverflowError,
    ModelNotFoundError,
    OssAgentError,
)
from agent.harmony.encoding import get_encoding

DEFAULT_URL = "http://localhost:8080"
URL_ENV = "OSS_AGENT_LLAMACPP_URL"
_HARMONY_PROBE = "<|start|>assistant<|channel|>final<|message|>"


def resolve_url(base_url: str | None = None) -> str:
    """The argument, else `OSS_AGENT_LLAMACPP_URL`, else http://localhost:8080 (a trailing `/v1` dropped)."""
    url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url.removesuffix("/v1")


class LlamaCppBackend(ServerBackend):
    """Streams raw Harmony completions from llama-server's `/completion`.

    `model` is sent only when given (a llama-server serving several models
    picks by it). `extra_body` adds or overrides request fields.
    """

    server = "llama-server"
    start_hint = f"start one, e.g. `llama-server -m gpt-oss-20b.gguf --port 8080`, or set {URL_ENV}"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str | None = None,
        context_window: int | None = None,
        max_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        seed: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(resolve_url(base_url), timeout=timeout, connect_timeout=connect_timeout)
        self.model = model  # the served model's name: as asked, or as the server names it once probed
        self._asked = model  # sent with each request only when asked for (a router picks by it)
        self._context_window = context_window
        self._max_completion = int(max_completion_tokens)
        self._sampling: dict[str, Any] = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": min_p,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "dry_multiplier": 0.0,
            "xtc_probability": 0.0,
        }
        if seed is not None:
            self._sampling["seed"] = seed
        self._extra = dict(extra_body or {})

    async def _probe(self) -> None:
        r = await self._get("/props")
        if r.status_code == 503:
            raise BackendUnavailableError(
                f"llama-server at {self.base_url} is still loading its model; try again shortly"
            )
        if r.status_code == 404 or not isinstance(props := read_json(r), dict):
            raise BackendError(
                f"{self.base_url} does not answer like llama-server (no /props); "
                f"point {URL_ENV} at a llama-server, or use --backend openai"
            )
        if r.status_code >= 400:
            raise BackendError(
                f"llama-server at {self.base_url} answered HTTP {r.status_code}: {error_text(props, r.text)}"
            )
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or props.get("n_ctx")
        if self._context_window is None and isinstance(n_ctx, int) and n_ctx > 0:
            self._context_window = n_ctx
        await self._check_model()
        await self._check_vocabulary()

    async def _check_model(self) -> None:
        """The asked-for model must be served; with none asked for, the served one names the conversation."""
        r = await self._get("/v1/models")
        body = read_json(r)
        data = body.get("data") if isinstance(body, dict) else None
        served = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        if self._asked is None:
            if r.status_code < 400 and len(served) == 1 and isinstance(served[0], str):
                self.model = served[0]
            return
        if r.status_code < 400 and self.model not in served:
            raise ModelNotFoundError(
                f"llama-server at {self.base_url} does not serve {self.model!r} "
                f"(it serves {sorted(map(str, served))}); pass the served name or no model"
            )

    async def _check_vocabulary(self) -> None:
        """The served model must tokenize Harmony's markers as openai-harmony does."""
        expected = get_encoding().encode(_HARMONY_PROBE, allowed_special="all")
        try:
            r = await self._http().post(
                "/tokenize", json={"content": _HARMONY_PROBE, "add_special": False, "parse_special": True}
            )
        except httpx.HTTPError as exc:
            raise self.transport_error(exc) from None
        got = (read_json(r) or {}).get("tokens") if r.status_code < 400 else None
        if got is not None and got != expected:
            raise ModelNotFoundError(
                f"the model llama-server at {self.base_url} serves is not gpt-oss "
                "(it tokenizes Harmony's markers differently); serve a gpt-oss GGUF"
            )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        """Yield completion ids as the server samples them (stop id included), then one `Usage`.

        With `request.final_schema`, the completion is sampled freely until the model
        opens a final answer; the body is then a second request, continuing from
        `<|channel|>final <|constrain|>json<|message|>`, with the schema as its `json_schema`.
        """
        async for item in sampled(request, self._sample, _json_schema_fields):
            yield item

    async def _sample(
        self, request: CompletionRequest, watch: FinalWatch | None, extra: Mapping[str, Any] | None
    ) -> AsyncGenerator[list[int] | Usage, None]:
        """One `/completion` request; with `watch`, it ends where a final answer's body begins."""
        await self.probe()
        prompt, stop = check_ids(request.prompt, "the prompt"), request.stop
        budget = completion_budget(
            len(prompt),
            self.context_window,
            request.max_tokens,
            self.max_completion_tokens,
            where=f"llama-server at {self.base_url}",
        )
        body: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": budget,
            "stream": True,
            "return_tokens": True,
            "cache_prompt": True,
            **self._sampling,
            **self._extra,
            **(extra or {}),
        }
        if self._asked is not None:
            body["model"] = self._asked
        started = time.perf_counter()
        first: float | None = None
        final: dict[str, Any] | None = None
        stopped = False
        try:
            async with self._http().stream("POST", "/completion", json=body) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise self._http_error(r.status_code, read_json(r), r.text)
                async with contextlib.aclosing(aiter_data(r)) as events:
                    async for data in events:
                        chunk = json.loads(data)
                        if not isinstance(chunk, dict):
                            raise self.unreadable(data)
                        if "error" in chunk:
                            raise self._http_error(500, chunk, data)
                        ids = check_ids(chunk.get("tokens") or [], f"llama-server at {self.base_url}")
                        if stopped and ids:
                            break  # the server samples on past a Harmony stop: end the request here
                        ids, hit = cut_at_stop(ids, stop)  # whether or not the server stops there
                        stopped = stopped or hit
                        if watch is not None:
                            ids = watch.feed(ids)
                        if ids:
                            first = first or time.perf_counter()
                            yield ids
                        if watch is not None and watch.opened:
                            final, stopped = chunk, True  # the body is the constrained request's
                            break
                        if chunk.get("stop"):
                            final = chunk
                            break
        except httpx.HTTPError as exc:
            raise self.transport_error(exc) from None
        except json.JSONDecodeError as exc:
            raise self.unreadable(exc) from None
        if final is None and not stopped:
            raise BackendError(f"llama-server at {self.base_url} ended the stream without finishing")
        if watch is not None and watch.held() and not watch.opened:
            yield watch.held()  # a completion cut inside a header: pass on what was sampled
        if watch is not None and watch.opened:
            yield make_usage(
                started=started, first=first, prompt_tokens=len(prompt), completion_tokens=0, finish_reason="stop"
            )
            return
        yield self._usage(final or {}, stopped, started, first, len(prompt))

    def _usage(self, final: dict[str, Any], stopped: bool, started: float, first: float | None, expected: int) -> Usage:
        timings = final.get("timings") or {}
        prefilled, cached = timings.get("prompt_n"), timings.get("cache_n") or 0
        counted = prefilled + cached if isinstance(prefilled, int) else final.get("tokens_evaluated")
        check_truncation(
            counted, expected, f"llama-server at {self.base_url}", "start llama-server with a larger context (-c)"
        )
        cut = not stopped and final.get("stop_type") == "limit"
        return make_usage(
            started=started,
            first=first,
            prompt_tokens=counted or expected,
            cached=cached,
            completion_tokens=timings.get("predicted_n") or final.get("tokens_predicted") or 0,
            prompt_ms=timings.get("prompt_ms"),
            predicted_ms=timings.get("predicted_ms"),
            finish_reason="length" if cut else "stop",
        )

    def _http_error(self, status: int, payload: Any, text: str) -> OssAgentError:
        message = error_text(payload, text.strip()[:200] or f"HTTP {status}")
        lowered = message.lower()
        if "context" in lowered and ("exceed" in lowered or "too long" in lowered):
            return ContextOverflowError(
                f"llama-server at {self.base_url} refused the prompt: {message}; "
                "start a new conversation or give the server a larger context (-c)"
            )
        if status == 503:
            return BackendUnavailableError(f"llama-server at {self.base_url} is busy or loading ({message}); try again")
        if status == 404 and "model" in lowered:
            return ModelNotFoundError(f"llama-server at {self.base_url} does not serve {self.model!r}: {message}")
        return BackendError(f"llama-server at {self.base_url} answered HTTP {status}: {message}")


def _json_schema_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The body follows `schema` (llama-server's grammar) and can end only as a final answer does."""
    return {"json_schema": schema, "logit_bias": [[token, False] for token in other_ends()]}
