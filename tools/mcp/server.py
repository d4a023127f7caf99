"""`MCPServer`: a Model Context Protocol server as a toolset, over stdio or streamable HTTP.

The server starts on first use (the first turn lists its tools) or in
`async with server:`, is shared by every run of the agent that holds it, and
stops in `agent.close()`. The connection lives in a task of its own, so runs
driven from different tasks share it. A server that stops during a call is
started again once; after that its tools answer with an error. Stdio servers
on Linux run under `tools.mcp.guard`, so they die with the host process.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.base import DEFAULT_TOOL_TIMEOUT
from tools.errors import ConfigurationError, MCPServerError, ToolRetry
from tools.function import to_identifier
from tools.mcp.tool import MCPTool
from tools.toolset import Toolset

DEFAULT_START_TIMEOUT = 60.0  # seconds for the process to start and answer the handshake (npx may download)
MAX_RESTARTS = 1
_GUARD = Path(__file__).with_name("guard.py")
_STDERR_TAIL = 4096  # bytes of the server's stderr kept for error messages


@dataclass(frozen=True)
class Stdio:
    """A server started as a subprocess, speaking JSON-RPC on stdin/stdout."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    cwd: str | None = None

    def label(self) -> str:
        return shlex.join([self.command, *self.args])


@dataclass(frozen=True)
class Http:
    """A server reached over streamable HTTP."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def label(self) -> str:
        return self.url


class MCPServer(Toolset):
    """The tools of one MCP server. Build it with `MCPServer.stdio(...)` or `MCPServer.http(...)`.

    `include`/`exclude` pick tools by name (the server's, `get-sum`, or the one
    the model sees, `get_sum`); `requires_approval` is True, False or the
    names that need it; `timeout` bounds each call.
    """

    def __init__(
        self,
        transport: Stdio | Http,
        *,
        name: str | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] = (),
        requires_approval: bool | Collection[str] = False,
        timeout: float | None = DEFAULT_TOOL_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        retries: int = 3,
        max_output_chars: int = 20_000,
    ) -> None:
        self.transport = transport
        self.name = name or _default_name(transport)
        self.include = set(include) if include is not None else None
        self.exclude = set(exclude)
        self.requires_approval = requires_approval
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.retries = retries
        self.max_output_chars = max_output_chars
        self.restarts = 0
        self.last_error = ""  # why the latest connection ended, with the stderr tail
        self._connection: _Connection | None = None
        self._starting: asyncio.Lock | None = None
        self._starting_loop: asyncio.AbstractEventLoop | None = None
        self._tools: list[Any] = []  # the server's tool specs from the latest listing

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> MCPServer:
        """A server run as `command args...`; `env` is added to a minimal environment (PATH, HOME, ...)."""
        if not command:
            raise ConfigurationError("an MCP server needs a command")
        return cls(Stdio(command, tuple(args), dict(env) if env else None, os.fspath(cwd) if cwd else None), **options)

    @classmethod
    def http(cls, url: str, *, headers: Mapping[str, str] | None = None, **options: Any) -> MCPServer:
        """A server at `url` (streamable HTTP), with extra request headers (`Authorization`, ...)."""
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the MCP server URL must start with http:// or https://, not {url!r}")
        return cls(Http(url, dict(headers or {})), **options)

    def __repr__(self) -> str:
        return f"MCPServer({self.name!r}, {self.transport.label()!r})"

    def needs_approval(self, tool: str) -> bool:
        if isinstance(self.requires_approval, bool):
            return self.requires_approval
        return tool in self.requires_approval or to_identifier(tool) in self.requires_approval

    @property
    def running(self) -> bool:
        return self._connection is not None and self._connection.client is not None

    # -- the toolset --------------------------------------------------------------

    async def start(self) -> None:
        """Start the server and list its tools now instead of on first use."""
        await self.list_tools()

    async def list_tools(self) -> list[MCPTool]:
        """The server's tools (starting it if needed), filtered and sorted by name.

        A server that stopped for good keeps its last list, so the prompt does not change;
        its tools answer with an error.
        """
        if self.restarts > MAX_RESTARTS and self._tools:
            return self._as_tools(self._tools)
        connection = await self._connected()
        try:
            specs = await _list_all(connection.client)
        except Exception as exc:
            if not _is_lost(exc):
                raise MCPServerError(
                    f"MCP server {self.name} could not list its tools: {_describe(exc)}", self.transport.label()
                ) from None
            await self._lost(connection, exc)
            return await self.list_tools()
        self._tools = specs
        return self._as_tools(specs)

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call one tool by the server's name; the `CallToolResult`."""
        connection = await self._connected()
        try:
            return await connection.client.call_tool(tool, arguments)
        except Exception as exc:
            if not _is_lost(exc):
                raise ToolRetry(f"{self.name} refused the call to {tool}: {_describe(exc)}") from None
            await self._lost(connection, exc)
            again = "it is not started again" if self.restarts > MAX_RESTARTS else "it restarts for the next call"
            stopped = f"the MCP server {self.name} stopped during the call ({self.last_error})"
            raise ToolRetry(f"{stopped}; {again}") from None

    async def aclose(self) -> None:
        """Stop the server (its whole process group for stdio)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.stop()

    async def __aenter__(self) -> MCPServer:
        await self.start()
        return self

    # -- lifecycle ------------------------------------------------------------------

    async def _connected(self) -> _Connection:
        """The live connection, started (or started again after a stop) if needed."""
        if self._starting is None or self._starting_loop is not asyncio.get_running_loop():
            self._starting = asyncio.Lock()
            self._starting_loop = asyncio.get_running_loop()
        async with self._starting:
            connection = self._connection
            if connection is not None and connection.usable():
                return connection
            if connection is not None:  # left behind by another event loop, which stopped it on closing
                self._connection = None
            if self.restarts > MAX_RESTARTS:
                raise MCPServerError(
                    f"the MCP server {self.name} stopped {self.restarts} times and is not started again "
                    f"({self.last_error}); fix the server, then start a new agent",
                    self.transport.label(),
                )
            self._connection = await _Connection.open(self)
            return self._connection

    async def _lost(self, connection: _Connection, exc: BaseException) -> None:
        if self._connection is connection:
            self._connection = None
            self.restarts += 1
        await connection.stop()
        self.last_error = connection.explain(exc)

    def _as_tools(self, specs: list[Any]) -> list[MCPTool]:
        """The offered tools; `include`/`exclude` match the server's name (`get-sum`) or the one the model and
        `/tools` see (`get_sum`), and a name that matches neither is an error listing the available ones."""
        named: list[tuple[Any, str]] = []
        taken: set[str] = set()
        for spec in sorted(specs, key=lambda s: s.name):
            name = base = to_identifier(spec.name)
            n = 1
            while name in taken:  # `get-sum` and `get_sum` on one server
                n += 1
                name = f"{base}_{n}"
            taken.add(name)
            named.append((spec, name))
        known = {spec.name for spec, _ in named} | taken
        for key, names in (("include", self.include or set()), ("exclude", self.exclude)):
            unknown = sorted(set(names) - known)
            if unknown:
                available = ", ".join(name for _, name in named) or "none"
                raise ConfigurationError(
                    f"MCP server {self.name}: {key} names no tool it has: {', '.join(unknown)} (available: {available})"
                )

        def picked(names: set[str], spec: Any, name: str) -> bool:
            return spec.name in names or name in names

        return [
            MCPTool(self, spec, name)
            for spec, name in named
            if (self.include is None or picked(self.include, spec, name)) and not picked(self.exclude, spec, name)
        ]


class _Connection:
    """One running server: the SDK client lives in its own task, from handshake to stop."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.client: Any = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.stderr: IO[bytes] | None = None
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, server: MCPServer) -> _Connection:
        connection = cls(server)
        connection.task = asyncio.create_task(connection._run(), name=f"mcp server {server.name}")
        try:
            await asyncio.wait_for(asyncio.shield(connection.ready.wait()), server.start_timeout)
        except asyncio.TimeoutError:
            await connection.stop()
            raise connection.failed(f"did not answer within {server.start_timeout:g} s") from None
        except BaseException:
            await connection.stop()
            raise
        if connection.client is None:
            await connection.stop()
            raise connection.failed(_describe(connection.error) if connection.error else "it stopped at once")
        return connection

    def usable(self) -> bool:
        return self.client is not None and self.loop is asyncio.get_running_loop() and not self.stopping.is_set()

    async def _run(self) -> None:
        from mcp import Client

        try:
            async with Client(self._transport(), cache=None) as client:
                self.client = client
                self.ready.set()
                await self.stopping.wait()
        except BaseException as exc:  # start failures, and the loop cancelling us on close: both end the server
            self.error = exc
        finally:
            self.client = None
            self.ready.set()

    def _transport(self) -> Any:
        transport = self.server.transport
        if isinstance(transport, Http):
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = dict(transport.headers)
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=None)) if headers else None
            return streamable_http_client(transport.url, http_client=http)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        command, args = transport.command, list(transport.args)
        if sys.platform.startswith("linux"):
            command, args = sys.executable, ["-I", "-S", str(_GUARD), str(os.getpid()), command, *args]
        self.stderr = tempfile.TemporaryFile()
        params = StdioServerParameters(command=command, args=args, env=dict(transport.env or {}), cwd=transport.cwd)
        return stdio_client(params, errlog=self.stderr)  # type: ignore[arg-type]

    async def stop(self) -> None:
        """End the connection; the SDK stops the process (stdin closed, then SIGTERM to its group)."""
        self.stopping.set()
        task = self.task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            if not self.ready.is_set():
                task.cancel()  # still in the handshake
            try:
                await task
            except asyncio.CancelledError:
                if _cancelling():
                    raise

    def failed(self, why: str) -> MCPServerError:
        label = self.server.transport.label()
        tail = self.stderr_tail()
        said = f"; its stderr ends with: {_one_line(tail)}" if tail else ""
        return MCPServerError(f"the MCP server {self.server.name} ({label}) failed to start: {why}{said}", label, tail)

    def explain(self, exc: BaseException) -> str:
        tail = self.stderr_tail()
        return f"{_describe(exc)}; its stderr ends with: {_one_line(tail)}" if tail else _describe(exc)

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - _STDERR_TAIL))
            return self.stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""


async def _list_all(client: Any) -> list[Any]:
    specs: list[Any] = []
    cursor = None
    for _ in range(100):  # a server that pages forever cannot hang the turn
        page = await client.list_tools(cursor=cursor)
        specs += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return specs


def _is_lost(exc: BaseException) -> bool:
    """Whether a call failed because the connection is gone (not because the server refused it)."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    return not isinstance(exc, MCPError) or exc.code == CONNECTION_CLOSED


def _describe(exc: BaseException | None) -> str:
    while getattr(exc, "exceptions", None):  # an exception group from the SDK's task groups: its first cause
        exc = exc.exceptions[0]  # type: ignore[union-attr]
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    if isinstance(exc, (OSError, ValueError)) or not text:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def _one_line(tail: str, lines: int = 3) -> str:
    kept = [line.strip() for line in tail.splitlines() if line.strip()][-lines:]
    return " / ".join(kept)


def _default_name(transport: Stdio | Http) -> str:
    """`npx -y @scope/server-filesystem` -> `server_filesystem`; a URL -> its host."""
    if isinstance(transport, Http):
        from urllib.parse import urlsplit

        return to_identifier(urlsplit(transport.url).hostname or "mcp")
    words = [transport.command, *transport.args]
    launchers = {"npx", "uvx", "node", "python", "python3", "deno", "bunx", "docker", "uv", "pipx"}
    picked = transport.command
    if Path(transport.command).name in launchers or Path(transport.command).name.startswith("python"):
        picked = next((w for w in words[1:] if not w.startswith("-") and w not in ("run", "exec")), picked)
    parts = Path(picked).parts
    if "node_modules" in parts:  # node .../node_modules/@scope/server-x/dist/index.js -> server-x
        after = parts[parts.index("node_modules") + 1 :]
        picked = after[1] if after and after[0].startswith("@") and len(after) > 1 else (after[0] if after else picked)
    core = (picked[1:] if picked.startswith("@") else picked).split("@")[0]  # no npm scope or version
    return to_identifier(Path(core).stem or core)


def _cancelling() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return True if task is None or cancelling is None else cancelling() > 0
