"""Load `--tools path.py`: every `@tool` function the file defines."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError


class ToolsFileError(ConfigurationError):
    """A tools file is missing, does not import, or defines no tools."""


def load_tools_file(path: str | Path) -> list[Any]:
    """The `FunctionTool` objects defined at the top level of `path`, in file order."""
    from tools.function import FunctionTool

    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ToolsFileError(f"tools file {path} does not exist")
    name = "oss_agent_tools_" + hashlib.sha1(str(file).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ToolsFileError(f"tools file {path} cannot be imported (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(file.parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{path}, line {exc.lineno}" if exc.lineno else str(path)
        raise ToolsFileError(f"tools file {where}: syntax error: {exc.msg}") from exc
    except BaseException as exc:  # the file's own code failed; report the line in that file
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = _line_in(file, exc)
        where = f"{path}, line {line}" if line else str(path)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ToolsFileError(f"tools file {where}: {type(exc).__name__}{': ' + detail if detail else ''}") from exc
    finally:
        try:
            sys.path.remove(str(file.parent))
        except ValueError:
            pass
    found: list[Any] = []
    for value in vars(module).values():
        if isinstance(value, FunctionTool) and all(value is not f for f in found):
            found.append(value)
    if not found:
        raise ToolsFileError(
            f"tools file {path} defines no tools; decorate functions with @tool (from agent import tool)"
        )
    return found


def _line_in(file: Path, exc: BaseException) -> int | None:
    """The last line of `file` in the traceback of `exc`."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file:
            line = frame.lineno
    return line
