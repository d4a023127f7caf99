"""A stateful, locked-down Python sandbox in Docker: the lowest floor, knowing nothing of tools or agents.

`DockerSandbox` runs code in one long-lived container whose interpreter keeps
its state between calls (`tools.python.PythonTool` offers it to the model as
Harmony's built-in ``python`` namespace). Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_IMAGE", "IMAGE_ENV", "DockerSandbox", "ExecError", "ExecResult", "SandboxConfig"]
_LAZY = {
    "DEFAULT_IMAGE": "sandbox.docker_sandbox",
    "IMAGE_ENV": "sandbox.docker_sandbox",
    "DockerSandbox": "sandbox.docker_sandbox",
    "ExecError": "sandbox.result",
    "ExecResult": "sandbox.result",
    "SandboxConfig": "sandbox.config",
}

if TYPE_CHECKING:
    from sandbox.config import SandboxConfig
    from sandbox.docker_sandbox import DEFAULT_IMAGE, IMAGE_ENV, DockerSandbox
    from sandbox.result import ExecError, ExecResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
