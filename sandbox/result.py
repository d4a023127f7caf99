"""What one `DockerSandbox.run` returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecError:
    """An exception raised by the cell, or a sandbox event that stopped it.

    ``traceback`` holds the user's frames only (empty for sandbox events such
    as a timeout or an out-of-memory kill).
    """

    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return self.traceback.rstrip("\n") if self.traceback else f"{self.type}: {self.message}"


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one cell.

    ``result`` is the repr of the last expression (Jupyter style) or None.
    ``background`` is what threads or processes of earlier cells printed
    since the previous call. ``restarted`` means the interpreter was replaced
    and variables were lost; ``notice`` then says why (it also mentions
    stopped background processes and threads that are still running).
    """

    stdout: str = ""
    stderr: str = ""
    background: str = ""
    result: str | None = None
    error: ExecError | None = None
    timed_out: bool = False
    restarted: bool = False
    duration_s: float = 0.0
    truncated: bool = False
    notice: str | None = None

    @property
    def ok(self) -> bool:
        """The cell ran to completion without an exception."""
        return self.error is None and not self.timed_out
