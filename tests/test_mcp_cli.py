"""`oss-agent` with MCP servers: `--mcp`, `--mcp-config` (the mcpServers JSON shape), the config file, `/tools`."""

from __future__ import annotations

import json
import shlex

import pytest
from cli_helpers import cli_env, error_lines, run_cli, serve, spawn_chat
from fake_ollama import FakeOllama, call_text, final_text
from mcp_fixtures import npm_server, sdk_server

pytestmark = pytest.mark.mcp
PROMPT = "›"  # prompt_toolkit moves the cursor over the space instead of printing it


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "plan.md").write_text("ship on friday\n", encoding="utf-8")
    return folder


def files_command(folder) -> str:
    return shlex.join([*npm_server("mcp-server-filesystem"), str(folder)])


def test_run_with_mcp_lists_a_directory_and_reads_a_file(tmp_path, docs):
    fake = FakeOllama(
        [
            call_text("list_directory", json.dumps({"path": str(docs)})),
            call_text("read_text_file", json.dumps({"path": str(docs / "plan.md")})),
            final_text("Friday."),
        ]
    )
    with serve(fake) as url:
        done = run_cli("run", "--mcp", files_command(docs), "When do we ship?", env=cli_env(tmp_path, url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Friday.\n"
    prompts = [r["prompt"] for r in fake.generate_requests]
    assert "type read_text_file = (_: {" in prompts[0] and "namespace functions {" in prompts[0]
    assert "[FILE] plan.md" in prompts[1] and "ship on friday" in prompts[2]


def test_mcp_servers_from_a_json_file_and_the_config_file(tmp_path, docs):
    command, *args = sdk_server()
    servers = {
        "mcpServers": {
            "notes": {"command": command, "args": args, "include": ["echo"]},
            "off": {"command": "oss-agent-no-such-server", "disabled": True},
        }
    }
    (tmp_path / "claude.json").write_text(json.dumps(servers), encoding="utf-8")
    files, *files_args = npm_server("mcp-server-filesystem")
    config = tmp_path / "home" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        f'mcp_config = "../claude.json"\n[mcp_servers.files]\ncommand = {json.dumps(files)}\n'
        f'args = {json.dumps([*files_args, str(docs)])}\ninclude = ["list_directory"]\n',
        encoding="utf-8",
    )
    fake = FakeOllama(
        [
            call_text("echo", json.dumps({"text": "hi"})),
            call_text("list_directory", json.dumps({"path": str(docs)})),
            final_text("Done."),
        ]
    )
    with serve(fake) as url:
        done = run_cli("run", "go", env=cli_env(tmp_path / "home", url))
    assert done.returncode == 0, done.stderr
    prompts = [r["prompt"] for r in fake.generate_requests]
    assert "type echo = " in prompts[0] and "type list_directory = " in prompts[0]
    assert "type read_text_file" not in prompts[0]  # include= applies
    assert "echo: hi" in prompts[1] and "[FILE] plan.md" in prompts[2]


def test_a_server_that_fails_to_start_is_one_error_line(tmp_path):
    command = shlex.join([*sdk_server("--fail-start")])
    fake = FakeOllama([final_text("never")])
    with serve(fake) as url:
        done = run_cli("run", "--mcp", command, "hi", env=cli_env(tmp_path, url))
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert "failed to start" in line and "cannot open the database" in line
    assert fake.generate_requests == []


def test_tools_lists_mcp_tools_by_server(tmp_path, docs):
    import pexpect

    fake = FakeOllama([final_text("Hello.")])
    with serve(fake) as url:
        child = spawn_chat("--mcp", files_command(docs), env=cli_env(tmp_path, url))
        child.expect_exact(PROMPT)
        child.send("/tools\r")
        child.expect_exact("MCP server server_filesystem")  # not started yet: no tools listed
        child.expect_exact(PROMPT)
        assert "functions.list_directory" not in child.before
        child.send("hi\r")
        child.expect_exact("Hello.")
        child.expect_exact(PROMPT)
        child.send("/tools\r")
        child.expect_exact("MCP server server_filesystem")
        child.expect_exact("functions.list_directory")
        child.expect_exact(PROMPT)
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0


def test_doctor_starts_each_configured_server_and_lists_its_tools(tmp_path, docs):
    fake = FakeOllama(["<|channel|>final<|message|>2<|return|>"])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        good = run_cli("doctor", "--mcp", files_command(docs), env=env)
        bad = run_cli("doctor", "--mcp", "oss-agent-no-such-server --flag", env=env)
    import re

    assert good.returncode == 0, good.stdout
    assert re.search(r"✓ MCP server_filesystem: \d+ tools: create_directory, ", good.stdout), good.stdout
    assert bad.returncode == 1
    assert "✗ MCP" in bad.stdout and "oss-agent-no-such-server" in bad.stdout
