"""MCP servers as tools, end to end: real servers, a scripted model, the rendered prompt."""

from __future__ import annotations

import sys

import pytest
from mcp_fixtures import npm_server, sdk_server

from agent import Agent
from agent.backends import ScriptedBackend, call, final
from agent.harmony.render import render_text
from tools import tool
from tools.mcp import MCPServer

pytestmark = pytest.mark.mcp


def everything(**options) -> MCPServer:
    command, *args = npm_server("mcp-server-everything")
    return MCPServer.stdio(command, args, name="everything", **options)


def sdk(**options) -> MCPServer:
    command, *args = sdk_server()
    return MCPServer.stdio(command, args, **options)


def developer_message(backend: ScriptedBackend, index: int = 0) -> str:
    text = backend.prompt_texts[index]
    return text[text.index("<|start|>developer") : text.index("<|start|>user")]


def test_everything_tools_are_declared_called_and_fed_back() -> None:
    backend = ScriptedBackend(
        [
            call("functions.echo", {"message": "hello there"}),
            call("functions.get_sum", {"a": 2, "b": 40}),
            final("42"),
        ]
    )
    with Agent(backend=backend, tools=[everything()]) as agent:
        result = agent.run("add two numbers")
    assert result.output == "42"
    assert [(c.call.name, c.error) for c in result.tool_calls] == [("echo", None), ("get_sum", None)]
    assert result.tool_calls[0].output == "Echo: hello there"
    assert "42" in result.tool_calls[1].output
    declared = developer_message(backend)
    assert "type echo = (_: {\n// Message to echo\nmessage: string,\n}) => any;" in declared
    assert "type get_sum = (_: {" in declared and "get-sum" not in declared  # made an identifier, mapped back
    # the results went back to the model as tool messages
    assert (
        "<|start|>functions.echo to=assistant<|channel|>commentary<|message|>Echo: hello there<|end|>"
        in (backend.prompt_texts[1])
    )
    backend.assert_complete()


def test_mcp_tools_are_declared_like_tool_functions() -> None:
    server = everything(include={"get-sum"})
    with Agent(backend=ScriptedBackend([final("ok")]), tools=[server]) as agent:
        agent.run("hi")
        (mcp_sum,) = agent.tools.functions.values()

        def get_sum(a: float, b: float) -> float:
            return a + b

        get_sum.__doc__ = f"{mcp_sum.description}\n\nArgs:\n    a: First number\n    b: Second number\n"
        assert tool(get_sum).tool_description() == mcp_sum.tool_description()  # type: ignore[attr-defined]


def test_filesystem_server_reads_a_file_and_lists_a_directory(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("the meeting is at noon\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    command, *args = npm_server("mcp-server-filesystem")
    server = MCPServer.stdio(command, [*args, str(tmp_path)], name="files")
    backend = ScriptedBackend(
        [
            call("functions.read_text_file", {"path": str(tmp_path / "notes.txt")}),
            call("functions.list_directory", {"path": str(tmp_path)}),
            call("functions.read_text_file", {"path": "/etc/passwd"}),
            final("noon"),
        ]
    )
    with Agent(backend=backend, tools=[server]) as agent:
        result = agent.run("when is the meeting?")
    read, listing, outside = result.tool_calls
    assert read.output.strip() == "the meeting is at noon" and read.error is None
    assert "[FILE] notes.txt" in listing.output and "[DIR] sub" in listing.output
    assert outside.error is not None and "denied" in outside.output.lower()  # an isError result is a tool error
    assert "type read_text_file = (_: {" in developer_message(backend)


def test_prompt_prefix_is_identical_across_turns_while_the_tools_do_not_change() -> None:
    backend = ScriptedBackend([call("functions.echo", {"message": "a"}), final("one"), final("two"), final("three")])
    with Agent(backend=backend, tools=[everything()], date="2026-01-01") as agent:
        agent.run("first")
        declared = agent.settings.functions
        agent.run("second")
        agent.run("third")
        assert agent.settings.functions is declared  # not even rebuilt
    first, second, third = backend.prompts[0], backend.prompts[2], backend.prompts[3]
    assert second[: len(first)] == first and third[: len(second)] == second


def test_tools_that_join_at_run_time_are_declared_from_the_next_turn() -> None:
    backend = ScriptedBackend(
        [
            call("functions.grow", {}),
            final("grown"),
            call("functions.extra", {}),
            call("functions.late", {}),
            final("done"),
        ]
    )
    with Agent(backend=backend, tools=[sdk()]) as agent:
        agent.run("grow")
        assert "type extra" not in developer_message(backend, 1)  # never inside a tool chain

        @tool
        def late() -> str:
            """Added after the agent was built."""
            return "late!"

        agent.tools.add(late)
        result = agent.run("use the new tools")
    assert [c.output for c in result.tool_calls] == ["extra!", "late!"]
    declared = developer_message(backend, 2)
    assert "// A tool that appeared at run time.\ntype extra = () => any;" in declared
    assert "// Added after the agent was built.\ntype late = () => any;" in declared


def test_clashing_names_get_the_server_name_as_prefix() -> None:
    @tool
    def echo(text: str) -> str:
        """A local echo."""
        return f"local {text}"

    backend = ScriptedBackend(
        [
            call("functions.echo", {"text": "a"}),
            call("functions.sdk_echo", {"text": "b"}),
            call("functions.everything_echo", {"message": "c"}),
            final("ok"),
        ]
    )
    with Agent(backend=backend, tools=[echo, sdk(name="sdk", include={"echo"}), everything(include={"echo"})]) as agent:
        result = agent.run("echo three times")
    assert [c.output for c in result.tool_calls] == ["local a", "echo: b", "Echo: c"]
    declared = developer_message(backend)
    assert declared.index("type echo =") < declared.index("type sdk_echo =") < declared.index("type everything_echo =")


def test_include_exclude_and_approval() -> None:
    asked = []

    def approve(c) -> bool:
        asked.append(c.name)
        return False

    backend = ScriptedBackend(
        [call("functions.echo", {"message": "x"}), call("functions.get_sum", {"a": 1, "b": 2}), final("ok")]
    )
    server = everything(include={"echo", "get-sum", "get-env"}, exclude={"get-env"}, requires_approval={"echo"})
    with Agent(backend=backend, tools=[server], approve=approve) as agent:
        result = agent.run("go")
        assert sorted(agent.tools.functions) == ["echo", "get_sum"]
    assert asked == ["echo"]
    assert "declined" in result.tool_calls[0].output
    assert "3" in result.tool_calls[1].output


def test_results_images_resources_structured_content() -> None:
    backend = ScriptedBackend(
        [
            call("functions.picture", {}),
            call("functions.document", {}),
            call("functions.weather", {"city": "Oslo"}),
            final("ok"),
        ]
    )
    with Agent(backend=backend, tools=[sdk()]) as agent:
        result = agent.run("show me")
    picture, document, weather = (c.output for c in result.tool_calls)
    assert picture == "[image: image/png, 70 bytes; not shown to you]"
    assert document == "[resource <file:///notes/todo.txt>, text/plain]\nbuy milk"
    assert '"celsius": 21' in weather and '"city": "Oslo"' in weather
    assert "iVBOR" not in render_text(backend.prompts[-1])  # no base64 reaches the model


def test_everything_resource_links_and_images() -> None:
    backend = ScriptedBackend(
        [
            call("functions.get_tiny_image", {}),
            call("functions.get_resource_links", {"count": 2}),
            final("ok"),
        ]
    )
    with Agent(backend=backend, tools=[everything()]) as agent:
        result = agent.run("links")
    image, links = (c.output for c in result.tool_calls)
    assert "[image: image/png," in image
    assert links.count("[resource link ") == 2 and "<demo://resource/" in links


def test_server_started_with_async_with_is_shared_and_listed_once_per_turn() -> None:
    import asyncio

    async def main() -> tuple[str, str]:
        async with sdk() as server:
            assert server.running
            backend = ScriptedBackend([call("functions.pid", {}), final("a"), call("functions.pid", {}), final("b")])
            agent = Agent(backend=backend, tools=[server])
            first = (await agent.arun("pid")).tool_calls[0].output
            second = (await agent.arun("pid again")).tool_calls[0].output
            return first, second

    first, second = asyncio.run(main())
    assert first == second and first.isdigit()  # one process for both runs


def test_importing_agent_does_not_import_the_sdk() -> None:
    import subprocess

    code = "import agent, tools.mcp, sys; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_include_and_exclude_take_the_names_the_user_sees() -> None:
    backend = ScriptedBackend([call("functions.get_sum", {"a": 2, "b": 3}), final("ok")])
    server = everything(include={"echo", "get_sum", "get-env"}, exclude={"get_env"}, requires_approval={"get_sum"})
    with Agent(backend=backend, tools=[server], approve=lambda c: True) as agent:
        result = agent.run("go")
        assert sorted(agent.tools.functions) == ["echo", "get_sum"]
    assert "5" in result.tool_calls[0].output


def test_a_name_that_matches_no_tool_lists_the_available_ones() -> None:
    from agent.errors import ConfigurationError

    with Agent(backend=ScriptedBackend([final("never")]), tools=[everything(include={"get_summ"})]) as agent:
        with pytest.raises(ConfigurationError) as info:
            agent.run("go")
    message = str(info.value)
    assert message.startswith("MCP server everything: include names no tool it has: get_summ (available: ")
    assert "get_sum" in message and "echo" in message
    assert agent.history == []  # the turn never reached the model
