"""Helpers for the command-line tests: a fake Ollama that can stall, and the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_ollama import FakeOllama, FakeOllamaServer, Reply

PROMPT = "›"  # prompt_toolkit moves the cursor over the space instead of printing it
STALL_LIMIT_S = 60.0  # a stalled stream gives up by itself after this long
WEATHER_TOOLS = '''\
from agent import tool


@tool
def get_weather(city: str) -> dict:
    """Get the current weather for a city.

    Args:
        city: City name.
    """
    return {"city": city, "sky": "sunny", "temp_c": 21}


@tool(requires_approval=True)
def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: The file.
    """
    return f"deleted {path}"
'''


class _StallingLines(list):
    """Reply lines that stop after `keep` of them until `release` is set."""

    def __init__(
        self, lines: list[bytes], keep: int, stalled: threading.Event, release: threading.Event, resume: bool = False
    ) -> None:
        super().__init__(lines[:keep])
        self.stalled, self.release = stalled, release
        self.rest = lines[keep:] if resume else []

    def __iter__(self) -> Iterator[bytes]:
        yield from list.__iter__(self)
        self.stalled.set()
        if self.release.wait(STALL_LIMIT_S):
            yield from self.rest

    def __len__(self) -> int:  # never "one line": the handler must not send a Content-Length
        return max(2, list.__len__(self))


@dataclass
class StallingFake(FakeOllama):
    """`FakeOllama` whose n-th `/api/generate` answer (0-based) can stall after some chunks.

    `stall_at={0: 5}` sends 5 chunks of the first completion, sets `stalled`,
    then waits for `release` (or STALL_LIMIT_S) and closes the connection.
    """

    stall_at: dict[int, int] = field(default_factory=dict)
    resume: bool = False  # after `release`, send the rest of the completion instead of closing

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stalled = threading.Event()
        self.release = threading.Event()

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> Reply:
        index = len(self.generate_requests)
        reply = super().handle(method, path, body)
        if path == "/api/generate" and index in self.stall_at:
            reply.lines = _StallingLines(reply.lines, self.stall_at[index], self.stalled, self.release, self.resume)
        return reply

    def prompts(self) -> list[str]:
        return [r.get("prompt", "") for r in self.generate_requests]


@contextlib.contextmanager
def serve(fake: FakeOllama) -> Iterator[str]:
    """Serve `fake` on 127.0.0.1; yields its URL."""
    server = FakeOllamaServer(fake, lifetime=300).start()
    try:
        yield server.url
    finally:
        if isinstance(fake, StallingFake):
            fake.release.set()
        server.stop()


def cli_env(home: Path, host: str | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: private data and config dirs, no colours, no terminal queries."""
    config = home / "config.toml"
    if not config.exists():
        home.mkdir(parents=True, exist_ok=True)
        config.write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSS_AGENT_", "OLLAMA_"))}
    env.update(
        OSS_AGENT_HOME=str(home / "data"),
        OSS_AGENT_CONFIG=str(config),
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_DATA_HOME=str(home / "xdg-data"),
        NO_COLOR="1",
        TERM="xterm",
        COLUMNS="120",
        LINES="40",
        PROMPT_TOOLKIT_NO_CPR="1",
        PYTHONUNBUFFERED="1",
    )
    if host is not None:
        env["OLLAMA_HOST"] = host
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`oss-agent ARGS` as a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def spawn_chat(*args: str, env: dict[str, str], timeout: float = 30) -> Any:
    """`oss-agent chat ARGS` in a pseudo-terminal (pexpect)."""
    import pexpect

    return pexpect.spawn(
        sys.executable,
        ["-m", "agent.cli", "chat", *args],
        env=env,
        encoding="utf-8",
        timeout=timeout,
        dimensions=(40, 120),
    )


def say(child: Any, text: str) -> None:
    """Wait for the chat's prompt, then type `text` and Enter."""
    child.expect_exact(PROMPT)
    child.send(text + "\r")


def quit_chat(child: Any) -> None:
    """Ctrl-D at the prompt; the chat must exit cleanly."""
    import pexpect

    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]
