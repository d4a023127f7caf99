"""Run a stdio MCP server so that it cannot outlive the process that started it (Linux).

Started as `python -I -S guard.py HOST_PID COMMAND ARGS...` in a process group
of its own. The command runs as a child with the same stdin, stdout and stderr.
When the host dies (even by SIGKILL) the kernel sends this process SIGTERM
(`PR_SET_PDEATHSIG`), and a SIGTERM from anyone kills the whole group, so
servers started by `npx` or a shell go too. When the server exits, whatever it
left running in the group is killed with it (and so is this process).
Standard library only: it runs without site-packages.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _kill_group(*_: object) -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    host, command = int(argv[0]), argv[1:]
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGHUP, _kill_group)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != host:  # the host died before the line above took effect
        _kill_group()
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; the server should not inherit that
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
            os._exit(127)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        reason = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        sys.stderr.write(f"the MCP server {reason}\n")
    sys.stderr.flush()
    _kill_group()  # the server's own children, started in its group, do not outlive it
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
