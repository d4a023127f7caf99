"""One tool of an MCP server, as the agent loop sees it: `functions.NAME`."""

from __future__ import annotations

from typing import Any, Protocol

from openai_harmony import ToolDescription

from tools.base import Tool, ToolCall
from tools.errors import MCPServerError, ToolRetry
from tools.function import parse_json_arguments
from tools.mcp.results import format_result
from tools.schema import clean_schema


class Server(Protocol):
    """What a tool needs of its server (`MCPServer`): its settings, and a call by the server's tool name."""

    name: str
    timeout: float | None
    retries: int
    max_output_chars: int

    def needs_approval(self, tool: str) -> bool: ...

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any: ...


class MCPTool(Tool):
    """A server's tool. `name` is a Harmony identifier (`get-sum` -> `get_sum`); `remote_name` is the server's.

    An `isError` result, a protocol error or a server that stopped during the
    call reach the model as a tool error (`ToolRetry`), within the retry budget.
    """

    def __init__(self, server: Server, spec: Any, name: str) -> None:
        self.server = server
        self.remote_name: str = spec.name
        self.name = name
        self.description: str = spec.description or spec.title or ""
        self.input_schema: dict[str, Any] = dict(spec.input_schema or {})
        self.parameters = clean_schema(self.input_schema)
        self.timeout = server.timeout
        self.retries = server.retries
        self.requires_approval = server.needs_approval(spec.name)
        self.max_output_chars = server.max_output_chars

    def __repr__(self) -> str:
        return f"MCPTool({self.server.name!r}, {self.remote_name!r})"

    def tool_description(self) -> ToolDescription:
        params = self.parameters if self.parameters.get("properties") else None
        return ToolDescription.new(self.name, self.description, params)

    async def invoke(self, call: ToolCall) -> str:
        arguments = parse_json_arguments(call.arguments)
        if not isinstance(arguments, dict):
            raise ToolRetry(f"the arguments of {self.name} must be a JSON object; call it again with one")
        try:
            result = await self.server.call(self.remote_name, arguments)
        except MCPServerError as exc:  # it stopped and could not be started again: the model hears it
            raise ToolRetry(str(exc)) from None
        text = format_result(result)
        if result.is_error:
            raise ToolRetry(text or f"{self.name} failed without saying why")
        return text
