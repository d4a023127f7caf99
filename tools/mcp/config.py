"""MCP servers from the command line and from files.

`--mcp "npx -y @modelcontextprotocol/server-filesystem ./docs"` is split like a
shell would; `--mcp-http URL` names a streamable HTTP server; a JSON file in the
`mcpServers` shape that Claude Desktop and other clients write
(`{"mcpServers": {"name": {"command": ..., "args": [...], "env": {...}}}}`, or
`{"url": ..., "headers": {...}}`) gives named servers.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tools.errors import ConfigurationError
from tools.mcp.server import MCPServer


def from_command(spec: str, **options: Any) -> MCPServer:
    """`"CMD ARGS..."` as a stdio server."""
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise ConfigurationError(f"--mcp {spec!r}: {exc}; quote the command as a shell would") from None
    if not words:
        raise ConfigurationError('--mcp needs a command, e.g. --mcp "npx -y @modelcontextprotocol/server-everything"')
    return MCPServer.stdio(words[0], words[1:], **options)


def from_url(url: str, **options: Any) -> MCPServer:
    """`URL` as a streamable HTTP server."""
    return MCPServer.http(url, **options)


def from_json_file(path: str | Path) -> list[MCPServer]:
    """The servers of an `mcpServers` JSON file; entries with `"disabled": true` are left out."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read the MCP servers file {file}: {exc}") from None
    return from_mapping(data, str(file), base=file.parent)


def from_mapping(data: Any, where: str, base: Path | None = None) -> list[MCPServer]:
    """Servers from a decoded `{"mcpServers": {...}}` object (or the inner mapping itself)."""
    if isinstance(data, dict) and "mcpServers" in data:
        data = data["mcpServers"]
    if not isinstance(data, dict):
        raise ConfigurationError(f'{where}: expected an object of servers by name under "mcpServers"')
    return [
        _entry(name, entry, f"{where}: server {name!r}", base)
        for name, entry in data.items()
        if not (isinstance(entry, dict) and entry.get("disabled") is True)
    ]


def unique(servers: Iterable[MCPServer]) -> list[MCPServer]:
    """Servers with distinct names: a repeated name gets `_2`, `_3`, ... (names prefix clashing tools)."""
    seen: dict[str, int] = {}
    result = []
    for server in servers:
        n = seen.get(server.name, 0) + 1
        seen[server.name] = n
        if n > 1:
            server.name = f"{server.name}_{n}"
        result.append(server)
    return result


def _entry(name: str, entry: Any, where: str, base: Path | None) -> MCPServer:
    if not isinstance(entry, dict):
        raise ConfigurationError(f'{where}: expected an object with "command" or "url"')
    options: dict[str, Any] = {"name": name}
    for key in ("include", "exclude"):
        if key in entry:
            options[key] = _strings(entry[key], f"{where}: {key}")
    if "requires_approval" in entry:
        value = entry["requires_approval"]
        options["requires_approval"] = value if isinstance(value, bool) else _strings(value, f"{where}: approval")
    if "timeout" in entry:
        if isinstance(entry["timeout"], bool) or not isinstance(entry["timeout"], (int, float)):
            raise ConfigurationError(f"{where}: timeout must be a number of seconds")
        options["timeout"] = float(entry["timeout"])
    kind = entry.get("type") or entry.get("transport")
    if kind == "sse":
        raise ConfigurationError(f"{where}: SSE servers are not supported; use the server's streamable HTTP URL")
    if "url" in entry:
        return MCPServer.http(
            _string(entry["url"], f"{where}: url"),
            headers=_string_map(entry.get("headers", {}), f"{where}: headers"),
            **options,
        )
    if "command" not in entry:
        raise ConfigurationError(f'{where}: needs "command" (a stdio server) or "url" (an HTTP server)')
    cwd = entry.get("cwd")
    if cwd is not None and base is not None and not Path(str(cwd)).expanduser().is_absolute():
        cwd = str(base / str(cwd))
    return MCPServer.stdio(
        _string(entry["command"], f"{where}: command"),
        _strings(entry.get("args", []), f"{where}: args"),
        env=_string_map(entry.get("env", {}), f"{where}: env"),
        cwd=cwd,
        **options,
    )


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: expected a non-empty string")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where}: expected a list of strings")
    return list(value)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError(f"{where}: expected an object of strings")
    return dict(value)
