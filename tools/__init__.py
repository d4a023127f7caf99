"""Tools: the `@tool` decorator, the registry, and the built-in namespaces."""

from tools.base import BuiltinTool, Tool, ToolCall
from tools.function import FunctionTool, tool
from tools.registry import ToolRegistry

__all__ = ["BuiltinTool", "FunctionTool", "Tool", "ToolCall", "ToolRegistry", "tool"]
