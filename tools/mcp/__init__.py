"""MCP servers as toolsets: `from tools.mcp import MCPServer`. The `mcp` SDK is imported on first use."""

from tools.mcp.server import MCPServer
from tools.mcp.tool import MCPTool

__all__ = ["MCPServer", "MCPTool"]
