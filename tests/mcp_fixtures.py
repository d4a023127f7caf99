"""Real MCP servers for the tests: the npm reference servers and the SDK server in tests/mcp_servers/.

`OSS_AGENT_MCP_SERVERS` names the directory `.ci/mcp_servers.sh` installed the
npm servers into. Tests marked `mcp` skip without the servers (or the `mcp`
package) unless OSS_AGENT_REQUIRE_MCP=1, which CI sets: then they fail.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REQUIRE_ENV = "OSS_AGENT_REQUIRE_MCP"
SERVERS_ENV = "OSS_AGENT_MCP_SERVERS"
SDK_SERVER = Path(__file__).parent / "mcp_servers" / "sdk_server.py"


def mcp_problem() -> str | None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        return 'the mcp package is not installed (pip install -e ".[mcp]")'
    if shutil.which("node") is None:
        return "node is not installed"
    root = os.environ.get(SERVERS_ENV)
    if not root:
        return f"{SERVERS_ENV} is not set (source .ci/mcp_servers.sh)"
    for name in ("mcp-server-everything", "mcp-server-filesystem"):
        if not (Path(root) / "node_modules" / ".bin" / name).exists():
            return f"{name} is not installed under {SERVERS_ENV}={root}"
    return None


def require_mcp() -> None:
    problem = mcp_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{problem}, and {REQUIRE_ENV}=1 requires the MCP servers", pytrace=False)
    pytest.skip(problem)


def npm_server(name: str) -> list[str]:
    """The command line of an installed npm reference server, run with node directly (no npx in between)."""
    script = Path(os.environ[SERVERS_ENV]) / "node_modules" / ".bin" / name
    return [shutil.which("node") or "node", str(script.resolve())]


def sdk_server(*args: str) -> list[str]:
    return [sys.executable, str(SDK_SERVER), *args]


def process_gone(pid: int) -> bool:
    """True when no process has this pid (a zombie nobody has reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, attempts: int = 400) -> bool:
    """Poll (bounded: about 20 s) until the process is gone."""
    import time

    for _ in range(attempts):
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return process_gone(pid)


def processes_with_env(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (a unique string passed in `env=`)."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() and not process_gone(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found
