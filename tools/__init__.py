"""Tools: the `@tool` decorator, the registry, and the built-in namespaces (built on `sandbox`, never on `agent`).

Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BuiltinTool", "FunctionTool", "PythonTool", "Tool", "ToolCall", "ToolRegistry", "tool"]
_LAZY = {
    "BuiltinTool": "tools.base",
    "Tool": "tools.base",
    "ToolCall": "tools.base",
    "FunctionTool": "tools.function",
    "tool": "tools.function",
    "PythonTool": "tools.python",
    "ToolRegistry": "tools.registry",
}

if TYPE_CHECKING:
    from tools.base import BuiltinTool, Tool, ToolCall
    from tools.function import FunctionTool, tool
    from tools.python import PythonTool
    from tools.registry import ToolRegistry


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tools' has no attribute {name!r}")
