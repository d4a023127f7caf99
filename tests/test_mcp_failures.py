"""MCP servers that fail: at start, mid-call, hung, erroring, huge; and no process left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest
from mcp_fixtures import npm_server, processes_with_env, sdk_server, wait_gone

from agent import Agent
from agent.backends import ScriptedBackend, call, final
from agent.errors import MCPServerError, ToolRetriesExhausted
from tools.mcp import MCPServer

pytestmark = pytest.mark.mcp


def sdk(*args: str, **options) -> MCPServer:
    command, *rest = sdk_server(*args)
    return MCPServer.stdio(command, rest, name="sdk", **options)


def test_a_server_that_fails_to_start_names_the_command_and_its_stderr() -> None:
    backend = ScriptedBackend([final("never")])
    with Agent(backend=backend, tools=[sdk("--fail-start")]) as agent:
        with pytest.raises(MCPServerError) as info:
            agent.run("hi")
        assert agent.history == []  # the turn can simply be retried
    message = str(info.value)
    assert "sdk_server.py --fail-start" in message and "failed to start" in message
    assert "cannot open the database /nonexistent/db.sqlite" in message
    assert "\n" not in message
    assert "exited with status 2" in info.value.stderr
    assert backend.prompts == []  # the model was never asked


def test_a_missing_command_is_a_start_error() -> None:
    server = MCPServer.stdio("oss-agent-no-such-mcp-server", ["--flag"])
    with Agent(backend=ScriptedBackend([final("never")]), tools=[server]) as agent:
        with pytest.raises(MCPServerError, match=r"oss-agent-no-such-mcp-server --flag.*failed to start"):
            agent.run("hi")


def test_a_server_that_dies_mid_call_is_a_tool_error_and_restarts_once() -> None:
    backend = ScriptedBackend(
        [
            call("functions.pid", {}),
            call("functions.crash", {}),
            call("functions.pid", {}),
            call("functions.crash", {}),
            call("functions.echo", {"text": "still there?"}),
            final("it broke"),
        ]
    )
    with Agent(backend=backend, tools=[sdk(retries=5)]) as agent:
        result = agent.run("crash it")
    first_pid, crash1, second_pid, crash2, after = result.tool_calls
    assert crash1.error is not None and "stopped during the call" in crash1.output
    assert "crashing on purpose" in crash1.output and "exited with status 3" in crash1.output
    assert "restarts for the next call" in crash1.output
    assert second_pid.error is None and second_pid.output != first_pid.output  # a new process
    assert crash2.error is not None and "not started again" in crash2.output
    assert after.error is not None and "stopped 2 times and is not started again" in after.output
    assert wait_gone(int(first_pid.output)) and wait_gone(int(second_pid.output))


def test_a_dead_server_keeps_its_tools_declared_and_answers_with_errors() -> None:
    backend = ScriptedBackend(
        [
            call("functions.crash", {}),
            call("functions.crash", {}),
            final("broken"),
            call("functions.echo", {"text": "x"}),
            final("still broken"),
        ]
    )
    with Agent(backend=backend, tools=[sdk()]) as agent:
        agent.run("crash twice")
        declared = agent.settings.functions
        result = agent.run("again")  # no MCPServerError: the tools stay, and say what happened
        assert agent.settings.functions is declared
    assert "not started again" in result.tool_calls[0].output


def test_an_error_result_is_a_tool_error_within_the_retry_budget() -> None:
    backend = ScriptedBackend(
        [
            call("functions.fail", {"reason": "the disk is full"}),
            call("functions.fail", {"reason": "the disk is still full"}),
        ]
    )
    with Agent(backend=backend, tools=[sdk(retries=1)]) as agent:
        with pytest.raises(ToolRetriesExhausted, match="the disk is still full"):
            agent.run("try")
        first = agent.history[2]
    assert "the disk is full" in first.content[0].text  # the model read the server's message


def test_a_hung_call_times_out_and_the_server_keeps_working() -> None:
    backend = ScriptedBackend(
        [
            call("functions.slow", {"seconds": 600}),
            call("functions.echo", {"text": "after"}),
            final("ok"),
        ]
    )
    with Agent(backend=backend, tools=[sdk(timeout=0.5)]) as agent:
        result = agent.run("wait")
    hung, after = result.tool_calls
    assert hung.error == "functions.slow timed out after 0.5 s"
    assert after.output == "echo: after" and after.error is None


def test_a_huge_result_is_cut_to_the_output_limit() -> None:
    backend = ScriptedBackend([call("functions.huge", {"size": 300_000}), final("ok")])
    with Agent(backend=backend, tools=[sdk(max_output_chars=1_000)]) as agent:
        result = agent.run("big")
    output = result.tool_calls[0].output
    assert output.startswith("x" * 1_000) and "[output truncated: 299000 more characters]" in output


def test_bad_arguments_are_refused_by_the_server_as_a_tool_error() -> None:
    backend = ScriptedBackend([call("functions.echo", {"wrong": 1}), call("functions.echo", "[1, 2]"), final("ok")])
    with Agent(backend=backend, tools=[sdk()]) as agent:
        result = agent.run("go")
    refused, not_object = result.tool_calls
    assert refused.error is not None and "text" in refused.output
    assert not_object.error is not None and "must be a JSON object" in not_object.output


def test_close_stops_the_server_and_what_it_started() -> None:
    backend = ScriptedBackend([call("functions.pid", {}), call("functions.spawn", {}), final("ok")])
    agent = Agent(backend=backend, tools=[sdk()])
    pid, child = (int(c.output) for c in agent.run("pid").tool_calls)
    assert not wait_gone(pid, attempts=1) and not wait_gone(child, attempts=1)  # running between runs
    agent.close()
    assert wait_gone(pid) and wait_gone(child)


def test_each_event_loop_gets_its_own_server_and_the_old_one_stops() -> None:
    backend = ScriptedBackend([call("functions.pid", {}), final("a"), call("functions.pid", {}), final("b")])
    agent = Agent(backend=backend, tools=[sdk()])
    first = int(asyncio.run(agent.arun("one")).tool_calls[0].output)
    assert wait_gone(first)  # asyncio.run cancelled the connection, which stopped the process
    second = int(asyncio.run(agent.arun("two")).tool_calls[0].output)
    assert second != first
    asyncio.run(agent.aclose())
    assert wait_gone(second)


HOST = """
import asyncio, sys
from tools.mcp import MCPServer

async def main():
    servers = [MCPServer.stdio(sys.argv[1], sys.argv[2:3], env={"OSS_AGENT_TEST_MARK": sys.argv[-1]}),
               MCPServer.stdio(sys.argv[3], sys.argv[4:5], env={"OSS_AGENT_TEST_MARK": sys.argv[-1]})]
    for server in servers:
        await server.start()
    for name in ("pid", "spawn"):
        result = await servers[0].call(name, {})
        print(result.content[0].text, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process guard is Linux-only")
def test_no_server_survives_its_host_being_killed() -> None:
    marker = f"mark-{uuid.uuid4().hex}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, *sdk_server(), *npm_server("mcp-server-everything"), marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=root,
        text=True,
    )
    try:
        assert host.stdout is not None
        pid, child = int(host.stdout.readline()), int(host.stdout.readline())
        started = processes_with_env(marker)
        assert {pid, child} <= set(started) and len(started) >= 5  # two guards, the Python server and its child, node
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        assert all(wait_gone(p) for p in started), [p for p in started if not wait_gone(p, attempts=1)]
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
