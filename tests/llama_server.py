"""A real llama-server process for tests and benchmarks: 127.0.0.1 only, a free port, stopped on exit.

Also `collect`, which drains one backend stream.

The binary comes from `OSS_AGENT_LLAMA_SERVER` (set by `.ci/llama_server.sh`),
else from the cache that script fills, else from PATH. Tests marked
`llamacpp` skip without it, or fail when `OSS_AGENT_REQUIRE_LLAMACPP=1` (CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tiny_gguf import LLAMACPP_VERSION, cache_dir

from agent.backends.base import CompletionRequest, Usage
from agent.harmony.encoding import special_ids

BINARY_ENV = "OSS_AGENT_LLAMA_SERVER"
REQUIRE_ENV = "OSS_AGENT_REQUIRE_LLAMACPP"
READY_TIMEOUT_S = 120.0


def binary() -> str | None:
    """Path of the llama-server binary, or None."""
    env = os.environ.get(BINARY_ENV)
    if env:
        return env if os.access(env, os.X_OK) else None
    cached = cache_dir().parent / f"llama-cpp-python-{LLAMACPP_VERSION}" / "bin" / "llama-server"
    if os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which("llama-server")


def require_binary() -> str:
    import pytest

    found = binary()
    if found is not None:
        return found
    problem = f"no llama-server binary (set {BINARY_ENV} or run `. .ci/llama_server.sh`)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{problem}, and {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(problem)


@dataclass
class Server:
    """A running llama-server."""

    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(model: Path, *, ctx: int = 4096, args: tuple[str, ...] = (), exe: str | None = None) -> Iterator[Server]:
    """Start llama-server on `model`, wait for `/health`, stop it on exit."""
    exe = exe or binary()
    if exe is None:
        raise FileNotFoundError(f"no llama-server binary; set {BINARY_ENV}")
    with tempfile.TemporaryDirectory(prefix="llama-server-") as tmp:
        log = Path(tmp) / "server.log"
        server = None
        for _ in range(3):  # the free port can be taken between the probe and the bind
            server = _start(exe, model, ctx, args, log)
            if server is not None:
                break
        if server is None:
            raise RuntimeError(
                f"llama-server did not start; last log lines:\n{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            yield server
        finally:
            _stop(server.process)


def _start(exe: str, model: Path, ctx: int, args: tuple[str, ...], log: Path) -> Server | None:
    port = _free_port()
    command = [
        exe,
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        str(ctx),
        "-np",
        "1",
        "-t",
        "2",
        "--metrics",
        *args,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(server.url + "/health").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass  # not listening yet
            try:
                process.wait(timeout=0.2)  # the pause between polls; returns at once if it died
            except subprocess.TimeoutExpired:
                continue
            return None  # exited: port taken or a bad model; the caller retries or reports
    _stop(process)
    raise RuntimeError(f"llama-server not healthy within {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


async def collect(backend: Any, prompt: list[int], max_tokens: int = 200) -> tuple[list[int], Usage]:
    """Every id one `backend.stream` yields, and its `Usage`; the backend is closed after."""
    out: list[int] = []
    usage = None
    try:
        async for item in backend.stream(CompletionRequest(prompt, special_ids().stops, max_tokens)):
            if isinstance(item, Usage):
                usage = item
            else:
                out += item
    finally:
        await backend.aclose()
    assert usage is not None, "the stream ended without a Usage"
    return out, usage
