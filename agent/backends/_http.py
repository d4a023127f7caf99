"""What every server backend shares, so that a new backend is a small file.

- `ServerBackend`: one HTTP client per event loop, one probe per server (a lock
  per loop, the result kept), transport errors mapped to our exceptions with a
  hint that names the server and how to start it.
- `completion_budget`: the room check made before anything is sent.
- `check_ids`, `check_truncation`, `make_usage`: what a backend does with the
  server's answer.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from agent.backends.base import DEFAULT_COMPLETION_TOKENS, Usage
from agent.errors import (
    BackendError,
    BackendUnavailableError,
    ContextOverflowError,
    PromptTruncatedError,
)

HARMONY_VOCAB = 201088  # o200k_base plus the Harmony specials
DEFAULT_CONTEXT = 131072  # gpt-oss's trained context, until the server says otherwise


class ServerBackend:
    """Base of the backends that talk to an inference server over HTTP.

    Subclasses set `server` (a name for messages) and `start_hint` (how to
    start one), implement `_probe()`, and call `self.probe()` before a request.
    """

    server = "the server"
    start_hint = ""
    _context_window: int | None = None  # from the argument, else learnt by `_probe()`
    _max_completion: int = DEFAULT_COMPLETION_TOKENS

    @property
    def context_window(self) -> int:
        """The server's context, once probed (until then `DEFAULT_CONTEXT`)."""
        return self._context_window or DEFAULT_CONTEXT

    @property
    def max_completion_tokens(self) -> int:
        """The configured budget per step, never more than half the context."""
        return capped_completion(self._max_completion, self.context_window)

    def __init__(
        self, base_url: str, *, timeout: float, connect_timeout: float, headers: Mapping[str, str] | None = None
    ) -> None:
        self.base_url = base_url
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None
        self._client_loop: Any = None
        self._probed = False
        self._probe_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:  # connections belong to one loop
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout, headers=self._headers)
            self._client_loop = loop
        return self._client

    async def probe(self) -> None:
        """Check the server answers and serves a gpt-oss model (once per backend)."""
        lock = self._probe_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if not self._probed:
                await self._probe()
                self._probed = True

    async def _probe(self) -> None:
        raise NotImplementedError

    async def _get(self, path: str) -> httpx.Response:
        """GET with transport errors mapped; the caller reads the status."""
        try:
            return await self._http().get(path)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc) from None

    def unavailable(self, exc: BaseException) -> BackendUnavailableError:
        reason = str(exc).strip() or type(exc).__name__
        hint = f"; {self.start_hint}" if self.start_hint else ""
        return BackendUnavailableError(f"cannot reach {self.server} at {self.base_url} ({reason}){hint}")

    def transport_error(self, exc: BaseException) -> BackendError:
        """A connection failure, as one of ours."""
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError)):
            return self.unavailable(exc)
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(
                f"{self.server} at {self.base_url} timed out ({type(exc).__name__}); "
                "raise the backend's timeout or check the server"
            )
        return BackendError(f"connection to {self.server} at {self.base_url} failed: {exc or type(exc).__name__}")

    def unreadable(self, detail: object) -> BackendError:
        first = (str(detail).strip().splitlines() or [""])[0][:200]
        return BackendError(f"{self.server} at {self.base_url} sent an unreadable stream line ({first})")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()


def completion_budget(prompt_len: int, window: int, *limits: int, where: str = "") -> int:
    """Tokens one completion may take; `ContextOverflowError` when the prompt leaves no room."""
    room = window - prompt_len
    if room <= 0:
        at = f" of {where}" if where else ""
        raise ContextOverflowError(
            f"the prompt of {prompt_len} tokens does not fit the {window}-token context{at}; "
            "start a new conversation or give the server a larger context"
        )
    return max(1, min(room, *limits))


def capped_completion(configured: int, window: int) -> int:
    """The per-step completion budget: as configured, but never more than half the context."""
    return max(1, min(configured, window // 2))


def check_ids(ids: Iterable[Any], where: str) -> list[int]:
    """The server's token ids, as ints; `BackendError` if one is not a Harmony token."""
    out = list(ids)
    for tok in out:
        if not isinstance(tok, int) or isinstance(tok, bool) or not 0 <= tok < HARMONY_VOCAB:
            raise BackendError(
                f"{where} returned token id {tok!r}, outside the gpt-oss vocabulary of {HARMONY_VOCAB}; "
                "serve a gpt-oss model"
            )
    return out


def cut_at_stop(ids: list[int], stops: frozenset[int]) -> tuple[list[int], bool]:
    """`ids` up to and including the first Harmony stop, and whether there was one."""
    for i, tok in enumerate(ids):
        if tok in stops:
            return ids[: i + 1], True
    return ids, False


def check_truncation(counted: int | None, expected: int, where: str, hint: str) -> None:
    """`PromptTruncatedError` when the server read clearly fewer prompt tokens than were sent.

    Servers count the whole prompt, cached tokens included; a small slack covers
    tokeniser edge cases, a cut prompt loses far more.
    """
    if counted and counted < expected - max(8, expected // 100):
        raise PromptTruncatedError(
            f"{where} read only {counted} of {expected} prompt tokens (it cut the prompt); {hint}"
        )


def make_usage(
    *,
    started: float,
    first: float | None,
    prompt_tokens: int,
    cached: int = 0,
    completion_tokens: int = 0,
    prompt_ms: float | None = None,
    predicted_ms: float | None = None,
    finish_reason: str | None = None,
) -> Usage:
    """One `Usage` from what a server reported; wall-clock times where it reported none."""
    ended = time.perf_counter()
    first = first or ended
    return Usage(
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=int(cached or 0),
        completion_tokens=int(completion_tokens or 0),
        prompt_seconds=prompt_ms / 1000 if prompt_ms is not None else first - started,
        completion_seconds=predicted_ms / 1000 if predicted_ms is not None else ended - first,
        total_seconds=ended - started,
        finish_reason=finish_reason,
    )


def error_text(payload: Any, fallback: str) -> str:
    """The message of any of the servers' error shapes."""
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("msg") or fallback)
        if isinstance(err, str):
            return err
    return fallback


def read_json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None
