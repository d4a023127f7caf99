"""Toolsets: where the tools of a turn come from.

A toolset lists the tools it offers for the next user turn (asynchronously: an
MCP server answers `tools/list`) and owns their lifecycle. `@tool` functions
and the built-ins live in a `LocalToolset`; `tools.mcp.MCPServer` is another.
The registry asks every toolset at the start of each turn, so a tool added
while the agent runs is declared to the model from the next turn on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from tools.base import Tool
from tools.errors import ConfigurationError


class Toolset(ABC):
    """A source of tools. `name` labels it (and prefixes its tools when their names clash)."""

    name: str

    @abstractmethod
    async def list_tools(self) -> Sequence[Tool]:
        """The tools to declare for the next turn, in a stable order."""

    def reset(self) -> None:
        """Forget per-conversation state (called by `Agent.reset()`)."""

    async def aclose(self) -> None:
        """Release what the toolset holds (called when the agent closes)."""

    async def __aenter__(self) -> Toolset:
        await self.list_tools()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LocalToolset(Toolset):
    """Tools known up front: `@tool` functions, `Tool` objects and built-ins, in the order added."""

    def __init__(self, name: str = "local") -> None:
        self.name = name
        self.tools: dict[str, Tool] = {}

    def add(self, tool: Tool) -> Tool:
        if tool.name in self.tools:
            raise ConfigurationError(f"two tools are named {tool.name!r}")
        self.tools[tool.name] = tool
        return tool

    async def list_tools(self) -> Sequence[Tool]:
        return list(self.tools.values())

    def reset(self) -> None:
        for tool in self.tools.values():
            tool.reset()

    async def aclose(self) -> None:
        for tool in self.tools.values():
            await tool.aclose()
