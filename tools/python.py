"""The built-in ``python`` tool: gpt-oss's stateful notebook, backed by `DockerSandbox`."""

from __future__ import annotations

import asyncio
from typing import Any

from openai_harmony import ToolNamespaceConfig

from sandbox.config import SandboxConfig
from sandbox.docker_sandbox import DockerSandbox
from sandbox.result import ExecResult
from tools.base import BuiltinTool, ToolCall

_TRAINED_TIMEOUT = "time out after 120.0 seconds"
_TRAINED_INTERNET = "Internet access for this session is UNKNOWN. Depends on the cluster."


def describe(timeout: float, network: bool | str) -> str:
    """The trained description, with the timeout and internet sentences made true."""
    text = ToolNamespaceConfig.python().description or ""
    text = text.replace(_TRAINED_TIMEOUT, f"time out after {float(timeout):.1f} seconds")
    internet = "enabled" if network else "disabled"
    return text.replace(_TRAINED_INTERNET, f"Internet access for this session is {internet}.")


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail of ``text`` with a visible marker between them."""
    if len(text) <= limit:
        return text
    marker = "\n[... {} characters truncated ...]\n"
    keep = max(limit - len(marker) - 12, 2)
    head, tail = keep * 2 // 3, keep - keep * 2 // 3
    return text[:head] + marker.format(len(text) - head - tail) + text[-tail:]


def render(result: ExecResult) -> str:
    """What the model reads: output, the last value, then the error; never empty."""
    parts = []
    if result.notice and result.restarted:
        parts.append(f"[{result.notice}]")
    if result.background:
        parts.append(
            "[printed by background threads or processes since the last call:]\n" + result.background.rstrip("\n")
        )
        parts.append("[this call's output:]")
    for stream in (result.stdout, result.stderr):
        if stream:
            parts.append(stream.rstrip("\n"))
    if result.result is not None:
        parts.append(result.result)
    if result.error is not None:
        parts.append(str(result.error))
    if result.notice and not result.restarted:
        parts.append(f"[{result.notice}]")
    return "\n".join(parts) if parts else "(no output)"


class PythonTool(BuiltinTool):
    """Runs the model's code in a stateful Docker sandbox, one per conversation.

    ``timeout`` is the per-call limit in seconds (told to the model); other
    keyword options (``image``, ``network``, ``memory``, ...) go to
    `DockerSandbox`. The container starts on the first call (or upload) and
    is removed by `reset` and `aclose`.
    """

    name = "python"

    def __init__(
        self,
        *,
        timeout: float = 120,
        image: str | None = None,
        requires_approval: bool = False,
        max_output_chars: int = 20_000,
        **sandbox_options: Any,
    ) -> None:
        SandboxConfig.from_options(sandbox_options)  # fail on bad options now, not at the first call
        self.cell_timeout = float(timeout)
        self.image = image
        self.requires_approval = requires_approval
        self.max_output_chars = max_output_chars
        self.timeout = None  # the sandbox enforces the cell limit itself
        self._options = sandbox_options
        self._sandbox: DockerSandbox | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def sandbox(self) -> DockerSandbox:
        """This conversation's sandbox; its container starts on first use (a call or an upload)."""
        if self._sandbox is None:
            self._sandbox = DockerSandbox(self.image, self.cell_timeout, **self._options)
        return self._sandbox

    def namespace_config(self) -> ToolNamespaceConfig:
        network = self._options.get("network", False)
        return ToolNamespaceConfig(name="python", description=describe(self.cell_timeout, network), tools=[])

    async def invoke(self, call: ToolCall) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            sandbox = self.sandbox
            try:
                result = await asyncio.to_thread(sandbox.run, call.arguments)
            except asyncio.CancelledError:
                sandbox.interrupt()
                raise
        return truncate(render(result), self.max_output_chars)

    def reset(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()

    async def aclose(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await asyncio.to_thread(sandbox.close)
