"""MCP over streamable HTTP: the SDK server on 127.0.0.1, started and stopped by the test."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from mcp_fixtures import sdk_server

from agent import Agent
from agent.backends import ScriptedBackend, call, final
from agent.errors import MCPServerError
from tools import tool
from tools.mcp import MCPServer

pytestmark = pytest.mark.mcp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def http_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The SDK server over HTTP; it exits when its stdin closes."""
    port = _free_port()
    process = subprocess.Popen([*sdk_server("--http", str(port))], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):  # bounded: about 30 s for the interpreter and the SDK to come up
            if _accepts(port) or process.poll() is not None:
                break
            time.sleep(0.1)
        assert _accepts(port), f"the HTTP MCP server did not listen on port {port}"
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_http_server_tools_are_called_with_the_headers(http_server) -> None:
    url, _ = http_server
    server = MCPServer.http(url, headers={"X-Api-Key": "secret-1"}, include={"echo", "header"})
    backend = ScriptedBackend(
        [
            call("functions.echo", {"text": "over http"}),
            call("functions.header", {"name": "X-Api-Key"}),
            final("ok"),
        ]
    )
    with Agent(backend=backend, tools=[server]) as agent:
        result = agent.run("hi")
        assert sorted(agent.tools.functions) == ["echo", "header"]
    assert [c.output for c in result.tool_calls] == ["echo: over http", "secret-1"]
    assert server.name == "_127_0_0_1"  # the host names the server; prefixes use it


def test_an_http_server_that_goes_away_is_a_tool_error_then_a_start_error(http_server) -> None:
    url, process = http_server

    @tool
    def stop_the_server() -> str:
        """Kill the HTTP server."""
        process.kill()
        process.wait()
        return "stopped"

    backend = ScriptedBackend(
        [
            call("functions.echo", {"text": "a"}),
            call("functions.stop_the_server", {}),
            call("functions.echo", {"text": "b"}),
            final("gone"),
            final("never"),
        ]
    )
    with Agent(backend=backend, tools=[stop_the_server, MCPServer.http(url, name="remote")]) as agent:
        before, _, after = agent.run("first").tool_calls
        assert before.output == "echo: a"
        assert after.error is not None and "remote" in after.output  # the model hears it mid-run
        with pytest.raises(MCPServerError, match=r"remote \(http://127.0.0.1:\d+/mcp\) failed to start"):
            agent.run("second")  # the next turn cannot list its tools


def test_an_unreachable_url_is_a_start_error() -> None:
    port = _free_port()
    server = MCPServer.http(f"http://127.0.0.1:{port}/mcp", name="nowhere", start_timeout=20)
    with Agent(backend=ScriptedBackend([final("never")]), tools=[server]) as agent:
        with pytest.raises(MCPServerError, match=f"nowhere \\(http://127.0.0.1:{port}/mcp\\) failed to start"):
            agent.run("hi")
