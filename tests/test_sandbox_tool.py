"""The built-in `python` tool on top of the sandbox."""

from __future__ import annotations

import asyncio

import pytest
from openai_harmony import ToolNamespaceConfig
from sandbox_fixtures import docker_client, sandbox_image  # noqa: F401

from agent.errors import ConfigurationError, SandboxUnavailableError
from sandbox import ExecError, ExecResult
from tools.base import BuiltinTool, ToolCall
from tools.python import PythonTool, render, truncate


def call(code: str) -> ToolCall:
    return ToolCall(recipient="python", name="python", method=None, arguments=code, channel="analysis")


def test_namespace_is_the_trained_description_made_true():
    trained = ToolNamespaceConfig.python().description
    tool = PythonTool()
    assert isinstance(tool, BuiltinTool) and tool.name == "python" and tool.requires_approval is False
    config = tool.namespace_config()
    assert config.name == "python" and config.tools == []
    assert "stateful Jupyter notebook" in config.description and "'/mnt/data'" in config.description
    assert "time out after 120.0 seconds" in config.description
    assert config.description.endswith("Internet access for this session is disabled.")
    assert config.description.split("Internet access")[0] == trained.split("Internet access")[0]
    custom = PythonTool(timeout=30, network=True, requires_approval=True)
    assert "time out after 30.0 seconds" in custom.namespace_config().description
    assert custom.namespace_config().description.endswith("Internet access for this session is enabled.")
    assert custom.requires_approval is True


def test_configuration_refuses_unsafe_or_invalid_values():
    from agent.errors import ConfigurationError
    from sandbox import DockerSandbox

    for options in (
        {"user": ""},
        {"user": "  "},
        {"memory": "1m"},
        {"memory": "lots"},
        {"seccomp": "off"},
        {"memory_swap": "100m"},
        {"no_such_option": 1},
        {"pids_limit": 1},
    ):
        with pytest.raises(ConfigurationError):
            DockerSandbox(**options)


def test_bad_options_fail_at_construction():
    with pytest.raises(ConfigurationError):
        PythonTool(memroy="1g")


def test_render_is_concise_and_never_empty():
    assert render(ExecResult()) == "(no output)"
    assert render(ExecResult(stdout="a\n", stderr="w\n", result="3")) == "a\nw\n3"
    error = ExecError("ValueError", "bad", "Traceback (most recent call last):\n  ...\nValueError: bad\n")
    assert render(ExecResult(stdout="x\n", error=error)).endswith("ValueError: bad")
    timeout = ExecError("TimeoutError", "execution exceeded 1 s and was interrupted; variables are preserved")
    assert render(ExecResult(error=timeout, timed_out=True)) == f"TimeoutError: {timeout.message}"
    restarted = render(ExecResult(result="1", restarted=True, notice="The previous Python process had stopped."))
    assert restarted == "[The previous Python process had stopped.]\n1"


def test_truncate_keeps_head_and_tail_with_marker():
    text = "H" * 500 + "T" * 500
    cut = truncate(text, 200)
    assert len(cut) <= 200 and cut.startswith("H") and cut.endswith("T") and "characters truncated" in cut
    assert truncate("short", 200) == "short"


def test_daemon_down_raises_unavailable_from_invoke(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    tool = PythonTool(image="any-image")
    with pytest.raises(SandboxUnavailableError):
        asyncio.run(tool.invoke(call("1")))
    asyncio.run(tool.aclose())


@pytest.mark.docker
def test_tool_is_stateful_and_reports_results(sandbox_image, docker_client):
    async def scenario():
        tool = PythonTool(image=sandbox_image, timeout=1, interrupt_grace=0.5, max_output_chars=2000)
        try:
            assert tool.sandbox.container_id is None  # started lazily
            assert await tool.invoke(call("x = 2 + 2")) == "(no output)"
            assert await tool.invoke(call("print('x is', x)\nx * 10")) == "x is 4\n40"
            error = await tool.invoke(call("1 / 0"))
            assert error.startswith("Traceback") and error.endswith("ZeroDivisionError: division by zero")
            timeout = await tool.invoke(call("while True: pass"))
            assert "TimeoutError" in timeout and "variables are preserved" in timeout
            assert await tool.invoke(call("x")) == "4"
            flood = await tool.invoke(call("print('z' * 100000)"))
            assert len(flood) <= 2000 and "truncated" in flood
            killed = await tool.invoke(call("sum(range(10**13))"))
            assert "restarted" in killed and "variables were lost" in killed
            container = tool.sandbox.container_id
            tool.reset()  # drops the state: the next call starts fresh
            assert tool.sandbox.container_id is None
            assert "NameError" in await tool.invoke(call("x"))
            assert tool.sandbox.container_id != container
            container = tool.sandbox.container_id
        finally:
            await tool.aclose()
        assert not docker_client.api.containers(all=True, filters={"id": container})  # aclose removed it

    asyncio.run(scenario())


@pytest.mark.docker
def test_upload_before_the_first_call_starts_the_sandbox(sandbox_image, docker_client, tmp_path):
    data = tmp_path / "numbers.txt"
    data.write_text("1 2 3\n")

    async def scenario():
        tool = PythonTool(image=sandbox_image)
        try:
            where = await asyncio.to_thread(tool.sandbox.upload, data)
            assert where == "/mnt/data/numbers.txt"
            assert await tool.invoke(call(f"sum(map(int, open({where!r}).read().split()))")) == "6"
        finally:
            await tool.aclose()

    asyncio.run(scenario())
