"""oss-agent: a Harmony-native agent framework for local gpt-oss models.

    from agent import Agent, tool

Names are imported on first use, so `import agent` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Agent", "JsonSchema", "OssAgentError", "RunResult", "ToolRetry", "tool"]
_LAZY = {
    "Agent": "agent.loop",
    "JsonSchema": "agent.output",
    "RunResult": "agent.events",
    "tool": "tools.function",
    "ToolRetry": "agent.errors",
    "OssAgentError": "agent.errors",
}

if TYPE_CHECKING:
    from agent.errors import OssAgentError, ToolRetry
    from agent.events import RunResult
    from agent.loop import Agent
    from agent.output import JsonSchema
    from tools.function import tool


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as exc:
            shadowed = shadowing_error()
            if shadowed is None:
                raise
            raise shadowed from exc
        return getattr(module, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")


def shadowing_error() -> Exception | None:
    """The error to raise when a module of the user's (a `tools.py`) was imported in place of a package of ours."""
    import sys

    for package in ("tools", "sandbox"):
        module = sys.modules.get(package)
        if module is not None and not hasattr(module, "__path__"):
            path = getattr(module, "__file__", None) or f"{package}.py"
            message = (
                f"your own {path} hides oss-agent's `{package}` package; "
                f"rename that file (for example to my_{package}.py)"
            )
            try:  # the error hierarchy lives in those packages: with one of them hidden, say it plainly
                from sandbox.errors import ConfigurationError
            except ImportError:
                return ImportError(message)
            return ConfigurationError(message)
    return None
