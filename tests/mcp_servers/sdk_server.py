"""An MCP server written with the official SDK, for the failure cases real servers rarely show.

`python sdk_server.py` serves stdio; `python sdk_server.py --http PORT` serves
streamable HTTP on 127.0.0.1 and exits when its stdin closes. `--fail-start`
writes to stderr and exits before answering anything.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import EmbeddedResource, TextResourceContents

server = MCPServer("failures")

# A 1×1 transparent PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@server.tool()
def echo(text: str) -> str:
    """Repeat the text."""
    return f"echo: {text}"


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of an HTTP request header (streamable HTTP only)."""
    return (ctx.headers or {}).get(name.lower(), "(none)")


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def spawn() -> str:
    """Start a child process that ignores stdin and outlives the server unless someone stops it; its pid."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], stdin=subprocess.DEVNULL)
    return str(child.pid)


@server.tool()
def crash() -> str:
    """Exit the server process in the middle of the call."""
    sys.stderr.write("crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after `seconds`."""
    await anyio.sleep(seconds)
    return "done"


@server.tool()
def huge(size: int) -> str:
    """A result of `size` characters."""
    return "x" * size


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason (an isError result)."""
    raise ToolError(reason)


@server.tool()
def weather(city: str) -> dict[str, Any]:
    """Structured content: a JSON object."""
    return {"city": city, "celsius": 21}


@server.tool()
def picture() -> Image:
    """An image result."""
    return Image(data=PIXEL, format="png")


@server.tool()
def document() -> EmbeddedResource:
    """An embedded resource."""
    return EmbeddedResource(
        type="resource",
        resource=TextResourceContents(uri="file:///notes/todo.txt", mimeType="text/plain", text="buy milk"),
    )


@server.tool(name="grow")
def grow() -> str:
    """Add a tool named `extra` (the tool list changes)."""

    def extra() -> str:
        """A tool that appeared at run time."""
        return "extra!"

    server.add_tool(extra)
    return "added"


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


if __name__ == "__main__":
    if "--fail-start" in sys.argv:
        sys.stderr.write("fatal: cannot open the database /nonexistent/db.sqlite\n")
        sys.exit(2)
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()
