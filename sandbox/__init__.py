"""A stateful, locked-down Python sandbox in Docker, and the built-in `python` tool.

`DockerSandbox` runs code in one long-lived container whose interpreter keeps
its state between calls; `PythonTool` exposes it to the model as Harmony's
built-in ``python`` namespace.
"""

from .config import SandboxConfig
from .docker_sandbox import DEFAULT_IMAGE, IMAGE_ENV, DockerSandbox
from .python_tool import PythonTool
from .result import ExecError, ExecResult

__all__ = ["DEFAULT_IMAGE", "IMAGE_ENV", "DockerSandbox", "ExecError", "ExecResult", "PythonTool", "SandboxConfig"]
