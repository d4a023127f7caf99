"""OpenAI-compatible completions backend (vLLM, SGLang, llama.cpp server).

Talks to `POST {base_url}/completions` with the rendered prompt as token ids
(or as text with `prompt_format="text"`, after the structural guard), asks the
server to keep special tokens in its output and to stop on `<|call|>` /
`<|return|>` by id, and streams the answer over SSE. Token ids come straight
from the server when it returns them (vLLM/SGLang `return_token_ids`);
otherwise the streamed text is turned back into ids incrementally. Never
`/chat/completions`: the server must not re-render the conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from agent.backends._text import IncrementalTokenizer, prompt_text
from agent.backends.base import CompletionRequest, Usage
from agent.errors import (
    BackendError,
    BackendUnavailableError,
    ContextOverflowError,
    ModelNotFoundError,
    PromptTruncatedError,
)

DEFAULT_BASE_URL = "http://localhost:8000/v1"


def resolve_base_url(base_url: str | None = None) -> str:
    """The argument, else `OSS_AGENT_BASE_URL`, else http://localhost:8000/v1 (`/v1` added to a bare host)."""
    url = (base_url or os.environ.get("OSS_AGENT_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if httpx.URL(url).path not in ("", "/") else url + "/v1"


def _error_text(payload: Any, fallback: str) -> str:
    """The message of any of the servers' error shapes."""
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("msg") or fallback)
        if isinstance(err, str):
            return err
    return fallback


class OpenAICompatibleBackend:
    """Streams raw Harmony completions from an OpenAI-compatible server.

    The model defaults to `OSS_AGENT_MODEL`, else the server's only model.
    The context window comes from the server's `max_model_len` unless given.
    `extra_body` adds or overrides request fields (server-specific options).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        context_window: int | None = None,
        max_completion_tokens: int = 8192,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        prompt_format: str = "ids",
        extra_body: Mapping[str, Any] | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if prompt_format not in ("ids", "text"):
            raise ValueError("prompt_format must be 'ids' or 'text'")
        self.base_url = resolve_base_url(base_url)
        self.model = model or os.environ.get("OSS_AGENT_MODEL")
        self._api_key = api_key or os.environ.get("OSS_AGENT_API_KEY")
        self._context_window = context_window
        self._max_completion = int(max_completion_tokens)
        self._sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
        if seed is not None:
            self._sampling["seed"] = seed
        self._prompt_format = prompt_format
        self._extra = dict(extra_body or {})
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: Any = None
        self._probed = False
        self._probe_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()

    @property
    def context_window(self) -> int:
        return self._context_window or 131072

    @property
    def max_completion_tokens(self) -> int:
        return self._max_completion

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:  # connections belong to one loop
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout, headers=headers)
            self._client_loop = loop
        return self._client

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        reason = str(exc).strip() or type(exc).__name__
        return BackendUnavailableError(
            f"cannot reach the completions server at {self.base_url} ({reason}); start one, "
            "e.g. `vllm serve openai/gpt-oss-20b`, or set OSS_AGENT_BASE_URL"
        )

    async def probe(self) -> None:
        """Check the server answers and serves the model (once)."""
        lock = self._probe_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if not self._probed:
                await self._probe()
                self._probed = True

    async def _probe(self) -> None:
        try:
            r = await self._http().get("/models")
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unavailable(exc) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.base_url}/models failed: {exc or type(exc).__name__}") from None
        if r.status_code in (401, 403):
            raise BackendError(f"{self.base_url} refused the API key (HTTP {r.status_code}); set OSS_AGENT_API_KEY")
        if r.status_code == 404 and self.model:
            return  # a server without a model list: trust the configured name
        if r.status_code >= 400:
            raise BackendError(f"{self.base_url}/models answered HTTP {r.status_code}: {_error_text(_json(r), r.text)}")
        served = {m.get("id"): m for m in (_json(r) or {}).get("data", []) if isinstance(m, dict)}
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
        limit = served[self.model].get("max_model_len")
        if self._context_window is None and isinstance(limit, int) and limit > 0:
            self._context_window = limit

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        """Yield completion ids as the server streams them, then one `Usage`."""
        await self.probe()
        prompt: list[int] | str = list(request.prompt)
        if self._prompt_format == "text":
            prompt, _ = prompt_text(request.prompt)  # raises if text would forge markers
        room = self.context_window - len(request.prompt)
        if room <= 0:
            raise ContextOverflowError(
                f"prompt of {len(request.prompt)} tokens does not fit the {self.context_window}-token context"
            )
        body = {
            "model": self.model, "prompt": prompt,
            "max_tokens": max(1, min(request.max_tokens, self._max_completion, room)),
            **self._sampling, "stream": True, "stream_options": {"include_usage": True},
            "stop_token_ids": sorted(request.stop), "skip_special_tokens": False,
            "spaces_between_special_tokens": False, "add_special_tokens": False,
            "return_token_ids": True, **self._extra,
        }
        started = time.perf_counter()
        first: float | None = None
        text_ids = IncrementalTokenizer()
        finish: str | None = None
        stop_reason: Any = None
        last_id: int | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        done = False
        try:
            async with self._http().stream("POST", "/completions", json=body) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise self._http_error(r)
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    chunk = json.loads(data)
                    if "error" in chunk or chunk.get("object") == "error":
                        raise BackendError(f"{self.base_url} failed while generating: {_error_text(chunk, data)}")
                    usage = chunk.get("usage") or usage
                    timings = chunk.get("timings") or timings
                    for choice in chunk.get("choices") or []:
                        ids = choice.get("token_ids")
                        if ids is None:
                            ids = text_ids.feed(choice.get("text") or "")
                        if ids:
                            first = first or time.perf_counter()
                            last_id = ids[-1]
                            yield list(ids)
                        finish = choice.get("finish_reason") or finish
                        stop_reason = choice.get("stop_reason", stop_reason)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unavailable(exc) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"connection to {self.base_url} failed: {exc or type(exc).__name__}") from None
        except json.JSONDecodeError as exc:
            raise BackendError(f"{self.base_url} sent an unreadable stream line ({exc})") from None
        if not done and finish is None:
            raise BackendError(f"{self.base_url} ended the stream without finishing")
        rest = text_ids.flush()
        if rest:
            last_id = rest[-1]
            yield rest
        if isinstance(stop_reason, int) and stop_reason in request.stop and last_id != stop_reason:
            yield [stop_reason]  # the server stopped on it but did not send it
        counted = usage.get("prompt_tokens")
        expected = len(request.prompt)
        if counted and counted < expected - max(8, expected // 100):
            raise PromptTruncatedError(
                f"{self.base_url} read only {counted} of {expected} prompt tokens (it cut the prompt); "
                "raise the server's context length"
            )
        yield self._usage(usage, timings, started, first, expected)

    def _http_error(self, r: httpx.Response) -> BaseException:
        message = _error_text(_json(r), r.text.strip()[:200] or f"HTTP {r.status_code}")
        if r.status_code == 404 and "model" in message.lower():
            return ModelNotFoundError(f"{self.base_url} does not serve {self.model!r}: {message}")
        if r.status_code == 400 and "context" in message.lower():
            return ContextOverflowError(f"{self.base_url} refused the prompt: {message}")
        return BackendError(f"{self.base_url} answered HTTP {r.status_code}: {message}")

    @staticmethod
    def _usage(usage: dict[str, Any], timings: dict[str, Any], started: float,
               first: float | None, prompt_len: int) -> Usage:
        ended = time.perf_counter()
        first = first or ended
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") or timings.get("cache_n") or 0
        prompt_s = timings.get("prompt_ms")
        decode_s = timings.get("predicted_ms")
        return Usage(
            prompt_tokens=usage.get("prompt_tokens") or prompt_len,
            cached_prompt_tokens=int(cached),
            completion_tokens=usage.get("completion_tokens") or 0,
            prompt_seconds=prompt_s / 1000 if prompt_s is not None else first - started,
            completion_seconds=decode_s / 1000 if decode_s is not None else ended - first,
            total_seconds=ended - started,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None
