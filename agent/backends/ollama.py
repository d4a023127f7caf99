"""Ollama backend: raw Harmony text over `/api/generate`.

The prompt ids are decoded to text and sent with `raw: true`, so Ollama's own
template and Harmony parser never run; the streamed text is turned back into
token ids incrementally. Ollama's raw output never contains the final
`<|call|>`/`<|return|>`: the stream just ends and the loop decides which stop
it was from the parsed message.

Uses the official `ollama` client for `generate`, `show` and `pull`. Where it
falls short: `/api/version` is not wrapped (one plain httpx GET instead);
`truncate: false` cannot be sent, so the prompt length is checked locally
before the request and against `prompt_eval_count` after it; streaming
connection errors come out as raw httpx exceptions, mapped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from agent.backends._http import (
    ServerBackend,
    check_truncation,
    completion_budget,
    make_usage,
)
from agent.backends._text import IncrementalTokenizer, prompt_text
from agent.backends.base import DEFAULT_COMPLETION_TOKENS, CompletionRequest, Usage
from agent.errors import (
    BackendError,
    BackendUnavailableError,
    ModelNotFoundError,
)

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_MODEL = "gpt-oss:20b"
DEFAULT_NUM_CTX = 32768


def resolve_host(host: str | None = None) -> str:
    """Base URL: the argument, else `OLLAMA_HOST`, else http://localhost:11434."""
    raw = (host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip().rstrip("/")
    if "://" in raw:
        return raw
    if raw.startswith(":"):
        raw = "127.0.0.1" + raw
    url = httpx.URL("http://" + raw)
    return str(url if url.port else url.copy_with(port=11434)).rstrip("/")


def resolve_model(model: str | None = None) -> str:
    """Model name: the argument, else `OSS_AGENT_MODEL`, else gpt-oss:20b."""
    return model or os.environ.get("OSS_AGENT_MODEL") or DEFAULT_MODEL


_START_HINT = "start it with `ollama serve` or set OLLAMA_HOST"


def _unavailable(url: str, exc: BaseException) -> BackendUnavailableError:
    reason = str(exc).strip() or type(exc).__name__
    return BackendUnavailableError(f"cannot reach Ollama at {url} ({reason}); {_START_HINT}")


def _not_found(url: str, model: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"Ollama at {url} does not have the model {model!r}; run `ollama pull {model}`")


def _map_error(exc: BaseException, url: str, model: str) -> BackendError:
    """Turn a client or transport failure into one of ours."""
    import ollama

    if isinstance(exc, ollama.ResponseError):
        if exc.status_code == 404:
            return _not_found(url, model)
        if exc.status_code == -1:
            return BackendError(f"Ollama at {url} failed while generating: {exc.error}")
        return BackendError(f"Ollama at {url} answered HTTP {exc.status_code}: {exc.error}")
    if isinstance(exc, (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout)):
        return _unavailable(url, exc)
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(f"Ollama at {url} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return BackendError(f"connection to Ollama at {url} failed: {exc or type(exc).__name__}")
    # pydantic.ValidationError / JSONDecodeError: a line the client could not read
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendError(f"Ollama at {url} sent an unreadable stream line: {first}")


def _client_errors() -> tuple[type[BaseException], ...]:
    import ollama
    import pydantic

    return (
        ollama.ResponseError,
        ConnectionError,
        httpx.HTTPError,
        pydantic.ValidationError,
        json.JSONDecodeError,
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-", 1)[0].split(".")[:3]:
        if not piece.isdigit():
            return (0, 0, 0)
        parts.append(int(piece))
    return tuple(parts)


@dataclass(frozen=True)
class ServerInfo:
    """What the start-up probe learnt."""

    version: str
    context_length: int | None  # the model's trained context, if the server says


class OllamaBackend(ServerBackend):
    """Streams completions from a local Ollama server in raw mode.

    Every request carries the same `num_ctx` (a different value would reload
    the model and drop its cache), temperature 1.0 / top_p 1.0 / top_k 0 unless
    set, and `num_predict` = the step's budget. `options` adds or overrides
    Ollama options (plain dict, passed through).
    """

    server = "Ollama"
    start_hint = _START_HINT

    def __init__(
        self,
        model: str | None = None,
        *,
        host: str | None = None,
        num_ctx: int = DEFAULT_NUM_CTX,
        max_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: str | float | None = "30m",
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.model = resolve_model(model)
        self.host = resolve_host(host)
        super().__init__(self.host, timeout=timeout, connect_timeout=connect_timeout)
        self._num_ctx = int(num_ctx)
        self._max_completion = int(max_completion_tokens)
        opts: dict[str, Any] = {"num_ctx": self._num_ctx, "temperature": temperature, "top_p": top_p, "top_k": top_k}
        if seed is not None:
            opts["seed"] = seed
        opts.update(options or {})
        opts["num_ctx"] = self._num_ctx
        self._options = opts
        self._keep_alive = keep_alive
        self._ollama: Any = None
        self._ollama_loop: Any = None
        self._info: ServerInfo | None = None

    @property
    def context_window(self) -> int:
        trained = self._info.context_length if self._info else None
        return min(self._num_ctx, trained) if trained else self._num_ctx

    @property
    def max_completion_tokens(self) -> int:
        return self._max_completion

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._ollama is None or self._ollama_loop is not loop:  # connections belong to one loop
            import ollama

            self._ollama = ollama.AsyncClient(host=self.host, timeout=self._timeout)
            self._ollama_loop = loop
        return self._ollama

    async def probe(self) -> ServerInfo:  # type: ignore[override]
        """Check the server answers and has the model (once; cached)."""
        await super().probe()
        assert self._info is not None
        return self._info

    async def _probe(self) -> None:
        try:
            r = await self._http().get("/api/version")
            r.raise_for_status()
            version = str(r.json().get("version", "unknown"))
        except (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError) as exc:
            raise self.unavailable(exc) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise BackendUnavailableError(
                f"{self.host} does not answer like an Ollama server ({exc}); "
                "start Ollama with `ollama serve` or set OLLAMA_HOST"
            ) from None
        if (0, 0, 0) < _version_tuple(version) < (0, 11, 0):  # 0.0.0 is a development build
            raise BackendError(f"Ollama {version} at {self.host} cannot run gpt-oss; upgrade to 0.11 or later")
        try:
            shown = await self._get_client().show(self.model)
        except _client_errors() as exc:
            raise _map_error(exc, self.host, self.model) from None
        info = shown.modelinfo or {}
        ctx = next((v for k, v in info.items() if k.endswith(".context_length")), None)
        self._info = ServerInfo(version=version, context_length=int(ctx) if ctx else None)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        """Yield completion ids as Ollama streams text, then one `Usage`."""
        await self.probe()
        text, expected = prompt_text(request.prompt)  # raises if text would forge markers
        budget = completion_budget(
            expected,
            self.context_window,
            request.max_tokens,
            self._max_completion,
            where=f"{self.model} (num_ctx={self.context_window})",
        )
        options = {**self._options, "num_predict": budget}
        tokens = IncrementalTokenizer()
        final: Any = None
        started = time.perf_counter()
        parts: Any = None
        try:
            parts = await self._get_client().generate(
                model=self.model,
                prompt=text,
                raw=True,
                stream=True,
                options=options,
                keep_alive=self._keep_alive,
            )
            async for part in parts:
                if final is not None:
                    continue
                if part.response:
                    ids = tokens.feed(part.response)
                    if ids:
                        yield ids
                if part.done:
                    final = part
        except _client_errors() as exc:
            raise _map_error(exc, self.host, self.model) from None
        finally:
            if parts is not None:
                await parts.aclose()
        if final is None:
            raise BackendError(
                f"Ollama at {self.host} ended the stream without finishing "
                "(no done:true line; e.g. a token-repeat abort)"
            )
        rest = tokens.flush()
        if rest:
            yield rest
        check_truncation(
            final.prompt_eval_count,
            expected,
            f"Ollama at {self.host}",
            f"its context is smaller than the prompt (num_ctx={self._num_ctx}); "
            "free GPU memory or lower num_ctx and shorten the conversation",
        )
        usage = make_usage(
            started=started,
            first=None,
            prompt_tokens=final.prompt_eval_count or expected,
            cached=0,  # Ollama does not report cache hits
            completion_tokens=final.eval_count or 0,
            prompt_ms=(final.prompt_eval_duration or 0) / 1e6,
            predicted_ms=(final.eval_duration or 0) / 1e6,
            finish_reason="length" if final.done_reason == "length" else final.done_reason,
        )
        if final.total_duration:
            usage.total_seconds = final.total_duration / 1e9
        yield usage

    async def aclose(self) -> None:
        client, self._ollama = self._ollama, None
        if client is not None and self._ollama_loop is asyncio.get_running_loop():
            await client.close()
        await super().aclose()


@dataclass(frozen=True)
class PullProgress:
    """One progress line of `ollama pull`."""

    status: str
    digest: str | None = None
    completed: int | None = None
    total: int | None = None


async def pull_model(
    model: str | None = None, *, host: str | None = None, connect_timeout: float = 5.0
) -> AsyncIterator[PullProgress]:
    """Pull `model` into the Ollama server, yielding progress as it arrives."""
    import ollama

    url, name = resolve_host(host), resolve_model(model)
    client = ollama.AsyncClient(host=url, timeout=httpx.Timeout(None, connect=connect_timeout))
    try:
        async for p in await client.pull(name, stream=True):
            yield PullProgress(p.status or "", p.digest, p.completed, p.total)
    except _client_errors() as exc:
        err = _map_error(exc, url, name)
        if isinstance(err, BackendUnavailableError):
            raise err from None
        raise BackendError(f"`ollama pull {name}` failed: {getattr(exc, 'error', exc)}") from None
    finally:
        await client.close()
