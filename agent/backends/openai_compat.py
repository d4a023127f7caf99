"""OpenAI-compatible completions backend (vLLM, SGLang, llama-server).

Talks to `POST {base_url}/completions` with the rendered prompt as token ids
(or as text with `prompt_format="text"`, after the structural guard), asks the
server to keep special tokens in its output and to stop on `<|call|>` /
`<|return|>` by id, and streams the answer over SSE (lines split at CR/LF
only). Token ids come straight from the server when it returns them: vLLM and
SGLang `token_ids` (`return_token_ids`), llama-server each token's `id` in
`logprobs`; otherwise the streamed text is turned back into ids incrementally.
Never `/chat/completions`: the server must not re-render the conversation.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from agent.backends._final import FinalWatch, sampled
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
from agent.backends._text import IncrementalTokenizer, prompt_text
from agent.backends.base import DEFAULT_COMPLETION_TOKENS, CompletionRequest, Usage
from agent.errors import (
    BackendError,
    ContextOverflowError,
    ModelNotFoundError,
    OssAgentError,
)

DEFAULT_BASE_URL = "http://localhost:8000/v1"


def resolve_base_url(base_url: str | None = None) -> str:
    """The argument, else `OSS_AGENT_BASE_URL`, else http://localhost:8000/v1 (`/v1` added to a bare host)."""
    url = (base_url or os.environ.get("OSS_AGENT_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if httpx.URL(url).path not in ("", "/") else url + "/v1"


def served_context(entry: Mapping[str, Any]) -> int | None:
    """The context window in a `/models` entry: vLLM and SGLang `max_model_len`, llama-server `meta.n_ctx`."""
    meta = entry.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    for value in (entry.get("max_model_len"), entry.get("context_length"), meta.get("n_ctx")):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _choice_ids(choice: Mapping[str, Any]) -> list[Any] | None:
    """Exact ids of one streamed choice, if the server sent them."""
    ids = choice.get("token_ids")
    if isinstance(ids, list):
        return ids
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        entries = logprobs["content"]
        if all(isinstance(e, dict) and "id" in e for e in entries):
            return [e["id"] for e in entries]
    return None


class OpenAICompatibleBackend(ServerBackend):
    """Streams raw Harmony completions from an OpenAI-compatible server.

    The model defaults to `OSS_AGENT_MODEL`, else the server's only model.
    The context window comes from the server's model list (or llama-server's
    `/props`) unless given. Sampling is neutral unless set: temperature 1,
    top_p 1, top_k 0 and min_p 0 (llama-server's own defaults are top_k 40 and
    min_p 0.05). `extra_body` adds or overrides request fields.
    """

    server = "the completions server"
    start_hint = (
        "start one, e.g. `vllm serve openai/gpt-oss-20b` or `llama-server -m gpt-oss-20b.gguf`, "
        "or set OSS_AGENT_BASE_URL"
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        context_window: int | None = None,
        max_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        seed: int | None = None,
        prompt_format: str = "ids",
        extra_body: Mapping[str, Any] | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if prompt_format not in ("ids", "text"):
            raise ValueError("prompt_format must be 'ids' or 'text'")
        key = api_key or os.environ.get("OSS_AGENT_API_KEY")
        super().__init__(
            resolve_base_url(base_url),
            timeout=timeout,
            connect_timeout=connect_timeout,
            headers={"Authorization": f"Bearer {key}"} if key else None,
        )
        self.model = model or os.environ.get("OSS_AGENT_MODEL")
        self._context_window = context_window
        self._max_completion = int(max_completion_tokens)
        self._sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p}
        if seed is not None:
            self._sampling["seed"] = seed
        self._prompt_format = prompt_format
        self._extra = dict(extra_body or {})

    async def _probe(self) -> None:
        r = await self._get("/models")
        if r.status_code in (401, 403):
            raise BackendError(f"{self.base_url} refused the API key (HTTP {r.status_code}); set OSS_AGENT_API_KEY")
        if r.status_code == 404 and self.model:
            return  # a server without a model list: trust the configured name
        if r.status_code >= 400:
            message = error_text(read_json(r), r.text)
            raise BackendError(f"{self.base_url}/models answered HTTP {r.status_code}: {message}")
        served = {m.get("id"): m for m in (read_json(r) or {}).get("data", []) if isinstance(m, dict)}
        if self.model is None:
            if len(served) != 1:
                names = sorted(map(str, served)) or "no models"
                raise ModelNotFoundError(f"{self.base_url} serves {names}; pass model= or set OSS_AGENT_MODEL")
            self.model = next(iter(served))
        elif self.model not in served:
            raise ModelNotFoundError(
                f"{self.base_url} does not serve {self.model!r} (it serves {sorted(map(str, served))}); "
                f"start it with `vllm serve {self.model}` or pass the served name"
            )
        if self._context_window is None:
            self._context_window = served_context(served[self.model]) or await self._props_context()

    async def _props_context(self) -> int | None:
        """llama-server's `/props`, next to `/v1`, when the model list does not say."""
        root = self.base_url.removesuffix("/v1")
        if root == self.base_url:
            return None
        try:
            r = await self._http().get(root + "/props")
        except httpx.HTTPError:
            return None
        props = read_json(r) if r.status_code == 200 else None
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        """Yield completion ids as the server streams them, then one `Usage`.

        With `request.final_schema`, sampling is free until the model opens a final answer;
        the body is a second request, continuing from `<|channel|>final <|constrain|>json<|message|>`,
        with the schema in vLLM's `structured_outputs` (and llama-server's `json_schema`).
        """
        async for item in sampled(request, self._sample, _structured_fields):
            yield item

    async def _sample(
        self, request: CompletionRequest, watch: FinalWatch | None, extra: dict[str, Any] | None
    ) -> AsyncGenerator[list[int] | Usage, None]:
        """One `/completions` request; with `watch`, it ends where a final answer's body begins."""
        await self.probe()
        prompt: list[int] | str = check_ids(request.prompt, "the prompt")
        expected = len(request.prompt)
        if self._prompt_format == "text":
            prompt, expected = prompt_text(request.prompt)  # raises if text would forge markers
        budget = completion_budget(
            expected,
            self.context_window,
            request.max_tokens,
            self.max_completion_tokens,
            where=f"{self.model} at {self.base_url}",
        )
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": budget,
            **self._sampling,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop_token_ids": sorted(request.stop),
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "add_special_tokens": False,
            "return_token_ids": True,
            "logprobs": 1,
            **self._extra,
            **(extra or {}),
        }
        started = time.perf_counter()
        first: float | None = None
        text_ids = IncrementalTokenizer()
        finish: str | None = None
        stop_reason: Any = None
        last_id: int | None = None
        stopped = False
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        done = False
        where = f"{self.base_url}"
        try:
            async with self._http().stream("POST", "/completions", json=body) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise self._http_error(r)
                async with contextlib.aclosing(aiter_data(r)) as events:
                    async for data in events:
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        chunk = json.loads(data)
                        if not isinstance(chunk, dict):
                            raise self.unreadable(data)
                        if "error" in chunk or chunk.get("object") == "error":
                            raise BackendError(f"{where} failed while generating: {error_text(chunk, data)}")
                        usage = chunk.get("usage") or usage
                        timings = chunk.get("timings") or timings
                        for choice in chunk.get("choices") or []:
                            exact = _choice_ids(choice)
                            if exact is not None:
                                ids = check_ids(exact, where)
                            else:
                                ids = text_ids.feed(choice.get("text") or "")
                            if stopped:
                                ids = []  # past a Harmony stop: only the usage still matters
                            ids, hit = cut_at_stop(ids, request.stop)
                            stopped = stopped or hit
                            if watch is not None:
                                ids = watch.feed(ids)
                            if ids:
                                first = first or time.perf_counter()
                                last_id = ids[-1]
                                yield list(ids)
                            finish = choice.get("finish_reason") or finish
                            stop_reason = choice.get("stop_reason", stop_reason)
                        if watch is not None and watch.opened:  # the body is the constrained request's
                            done, stopped = True, True
                            break
        except httpx.HTTPError as exc:
            raise self.transport_error(exc) from None
        except json.JSONDecodeError as exc:
            raise self.unreadable(exc) from None
        if not done and finish is None:
            raise BackendError(f"{where} ended the stream without finishing")
        if watch is not None and not watch.opened and watch.held():
            yield watch.held()  # the completion ended inside a header: pass on what was sampled
        rest = [] if stopped else text_ids.flush()
        if rest:
            last_id = rest[-1]
            yield rest
        if isinstance(stop_reason, int) and stop_reason in request.stop and last_id != stop_reason:
            yield [stop_reason]  # the server stopped on it but did not send it
        counted = usage.get("prompt_tokens")
        check_truncation(counted, expected, where, "raise the server's context length")
        details = usage.get("prompt_tokens_details") or {}
        yield make_usage(
            started=started,
            first=first,
            prompt_tokens=counted or expected,
            cached=details.get("cached_tokens") or timings.get("cache_n") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            prompt_ms=timings.get("prompt_ms"),
            predicted_ms=timings.get("predicted_ms"),
            finish_reason="length" if finish == "length" else finish,
        )

    def _http_error(self, r: httpx.Response) -> OssAgentError:
        message = error_text(read_json(r), r.text.strip()[:200] or f"HTTP {r.status_code}")
        if r.status_code == 404 and "model" in message.lower():
            return ModelNotFoundError(f"{self.base_url} does not serve {self.model!r}: {message}")
        if r.status_code == 400 and "context" in message.lower():
            return ContextOverflowError(f"{self.base_url} refused the prompt: {message}")
        return BackendError(f"{self.base_url} answered HTTP {r.status_code}: {message}")


def _structured_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The request fields that constrain a body to `schema`: vLLM's, and llama-server's.

    No `logit_bias` against other end tokens: llama-server reads its object keys as text, not ids;
    `constrained` reads whichever end token closes the complete JSON as `<|return|>`.
    """
    return {"structured_outputs": {"json": schema}, "json_schema": schema}
