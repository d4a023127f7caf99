"""oss-agent: a Harmony-native agent framework for local gpt-oss models.

    from agent import Agent, tool

Names are imported on first use, so `import agent` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Agent", "OssAgentError", "RunResult", "ToolRetry", "tool"]
_LAZY = {
    "Agent": "agent.loop",
    "RunResult": "agent.events",
    "tool": "tools.function",
    "ToolRetry": "agent.errors",
    "OssAgentError": "agent.errors",
}

if TYPE_CHECKING:
    from agent.errors import OssAgentError, ToolRetry
    from agent.events import RunResult
    from agent.loop import Agent
    from tools.function import tool


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
