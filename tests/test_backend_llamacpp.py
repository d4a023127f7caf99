"""Both llama.cpp paths against a real llama-server running tiny gpt-oss GGUFs.

`LlamaCppBackend` (native `/completion`, ids both ways) and
`OpenAICompatibleBackend` (`/v1/completions`, prompt as ids or as text) run a
tool chain and a second user turn; the server's own timings show what it
prefilled. The scripted model's final answer holds U+2028, which must survive
the SSE stream.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tiny_gguf
from cli_helpers import cli_env, run_cli
from llama_server import Server, collect, serve
from openai_harmony import Conversation, Message, Role, SystemContent

from agent import Agent, tool
from agent.backends import LlamaCppBackend, OpenAICompatibleBackend
from agent.errors import ContextOverflowError, OssAgentError
from agent.harmony.encoding import get_encoding

pytestmark = pytest.mark.llamacpp
CTX = 4096
TOOLS_FILE = '''\
from agent import tool


@tool
def lookup(q: str) -> str:
    """Look a thing up.

    Args:
        q: What to look up.
    """
    return f"{q} is 42"
'''


@tool
def lookup(q: str) -> str:
    """Look a thing up.

    Args:
        q: What to look up.
    """
    return f"{q} is 42"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve(tiny_gguf.scripted(calls=1), ctx=CTX) as running:
        yield running


def make_backend(kind: str, url: str, **kw) -> LlamaCppBackend | OpenAICompatibleBackend:
    if kind == "native":
        return LlamaCppBackend(url, **kw)
    return OpenAICompatibleBackend(base_url=url + "/v1", prompt_format=kind.split("-")[1], **kw)


def ids(text: str) -> list[int]:
    return get_encoding().encode(text, allowed_special="all")


def first_prompt(user: str = "Hi") -> list[int]:
    conv = Conversation.from_messages(
        [
            Message.from_role_and_content(Role.SYSTEM, SystemContent.new()),
            Message.from_role_and_content(Role.USER, user),
        ]
    )
    return get_encoding().render_conversation_for_completion(conv, Role.ASSISTANT)


@pytest.mark.parametrize("kind", ["native", "openai-ids", "openai-text"])
def test_sampled_ids_come_back_exactly(server, kind):
    backend = make_backend(kind, server.url)
    got, usage = asyncio.run(collect(backend, first_prompt()))
    assert got == ids(tiny_gguf.CALL)  # `<|call|>` included
    assert usage.finish_reason == "stop" and usage.completion_tokens == len(got)
    assert backend.context_window == CTX and backend.max_completion_tokens == CTX // 2


@pytest.mark.parametrize("kind", ["native", "openai-ids", "openai-text"])
def test_tool_chain_and_second_turn(server, kind):
    agent = Agent(backend=make_backend(kind, server.url), tools=[lookup], date="2025-01-01")
    try:
        turns = [agent.run("Hi"), agent.run("Once more")]
    finally:
        agent.close()
    for result in turns:
        assert result.output == tiny_gguf.ANSWER  # U+2028 intact through the stream
        assert [r.output for r in result.tool_calls] == ["x is 42"]
        assert json.loads(result.tool_calls[0].call.arguments) == {"q": "x"}
        call_step, final_step = result.steps
        assert (call_step.outcome, final_step.outcome) == ("tool_call", "final")
        assert call_step.usage.finish_reason == final_step.usage.finish_reason == "stop"
        # inside the chain the server prefills only what it has not seen: the
        # tool result, the assistant header, and the `<|call|>` it never evaluated
        seen = call_step.prompt_tokens + call_step.usage.completion_tokens - 1
        prefilled = final_step.usage.prompt_tokens - final_step.usage.cached_prompt_tokens
        assert final_step.shared_prefix_tokens == call_step.prompt_tokens
        assert prefilled == final_step.prompt_tokens - seen


def test_over_long_prompt_is_refused_before_sending(server):
    def prompt_tokens_total() -> float:
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        return float(re.search(r"^llamacpp:prompt_tokens_total (\S+)$", metrics, re.MULTILINE).group(1))

    before = prompt_tokens_total()
    long = first_prompt("word " * CTX)
    for kind in ("native", "openai-ids"):
        with pytest.raises(ContextOverflowError, match=f"{CTX}-token context"):
            asyncio.run(collect(make_backend(kind, server.url), long))
    assert prompt_tokens_total() == before


def test_completion_cut_by_the_budget_says_length(server):
    for kind in ("native", "openai-ids"):
        got, usage = asyncio.run(collect(make_backend(kind, server.url), first_prompt(), max_tokens=3))
        assert got == ids(tiny_gguf.CALL)[:3]
        assert usage.finish_reason == "length"


def test_random_weights_end_in_typed_errors():
    with serve(tiny_gguf.random_weights(), ctx=CTX) as random_server:
        for seed, kind in enumerate(["native", "openai-ids", "native"]):
            backend = make_backend(kind, random_server.url, max_completion_tokens=48, seed=seed)
            agent = Agent(backend=backend, tools=[lookup], max_steps=4, date="2025-01-01")

            async def run(agent: Agent = agent) -> None:
                try:
                    await asyncio.wait_for(agent.arun("Hi"), 120)
                finally:
                    await agent.aclose()

            with pytest.raises(OssAgentError):
                asyncio.run(run())


def test_cli_doctor_and_run_without_model(server, tmp_path: Path):
    env = cli_env(tmp_path / "home")
    tools = tmp_path / "lookup_tools.py"
    tools.write_text(TOOLS_FILE, encoding="utf-8")
    for args in (
        ["--backend", "llamacpp", "--base-url", server.url],
        ["--backend", "openai", "--base-url", server.url + "/v1"],
    ):
        doctor = run_cli("doctor", *args, env=env, timeout=120)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"context {CTX:,} tokens" in doctor.stdout and "all set" in doctor.stdout
        assert "raw Harmony mode: answered 'Done" in doctor.stdout
        ran = run_cli("run", *args, "-t", str(tools), "--no-save", "Look x up", env=env, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert tiny_gguf.ANSWER in ran.stdout


def test_cli_doctor_with_no_server_listening(tmp_path: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    doctor = run_cli(
        "doctor",
        "--backend",
        "llamacpp",
        "--base-url",
        f"http://127.0.0.1:{port}",
        env=cli_env(tmp_path / "home"),
        timeout=60,
    )
    assert doctor.returncode == 1
    assert "no llama-server answers" in doctor.stdout and "all set" not in doctor.stdout


def test_the_served_model_names_the_conversation_everywhere(server, tmp_path: Path):
    """With no -m, the banner, /model and the saved session say the model the server serves, not gpt-oss:20b."""
    from cli_helpers import quit_chat, say, spawn_chat

    served = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    env = cli_env(tmp_path / "home")
    for args in (
        ["--backend", "llamacpp", "--base-url", server.url],
        ["--backend", "openai", "--base-url", server.url + "/v1"],
    ):
        ran = run_cli("run", *args, "Say hi", env=env, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        child = spawn_chat(*args, env=env, timeout=120)
        child.expect_exact(f" · {served} via {args[1]} · ")
        say(child, "/model")
        child.expect_exact(f"model: {served} (")
        quit_chat(child)
    listed = run_cli("sessions", env=env)
    assert listed.stdout.count(served) == 2 and "gpt-oss:20b" not in listed.stdout, listed.stdout
    rows = [json.loads(line) for line in run_cli("sessions", "--json", env=env).stdout.splitlines()]
    assert [r["model"] for r in rows] == [served, served]
    shown = run_cli("sessions", "show", rows[0]["id"], env=env)
    assert served in shown.stdout and "gpt-oss:20b" not in shown.stdout


def test_an_option_another_backend_has_is_a_warning_once(server, tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text("[options]\nnum_ctx = 16384\ntemperature = 0.5\n", encoding="utf-8")
    env = cli_env(tmp_path / "home")

    def run_with_config():
        args = ("--config", str(config), "--backend", "llamacpp", "--base-url", server.url, "--no-save")
        return run_cli("run", *args, "Say hi", env=env, timeout=120)

    ran = run_with_config()
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count("warning: the llamacpp backend has no model option num_ctx; it is ignored") == 1
    config.write_text("[options]\nnum_cxt = 16384\n", encoding="utf-8")
    typo = run_with_config()
    assert typo.returncode == 1
    assert "unknown model option 'num_cxt'; known: temperature, top_p, top_k, seed, num_ctx, max_tokens" in typo.stderr


def test_sync_calls_leave_no_pending_tasks_behind(server, tmp_path: Path):
    """`run`, a `stream` left early and `close` with either server backend: nothing half-closed is left for the
    interpreter to complain about ("Task was destroyed but it is pending!"), with or without `close()`."""
    import subprocess
    import sys

    script = tmp_path / "sync_use.py"
    script.write_text(
        f"""
from agent import Agent
from agent.backends import LlamaCppBackend, OpenAICompatibleBackend

for backend in (LlamaCppBackend("{server.url}"), OpenAICompatibleBackend(base_url="{server.url}/v1")):
    agent = Agent(backend=backend)
    print(agent.run("hi").output)
    for event in agent.stream("and again"):
        break
    for event in agent.stream("once more"):
        pass
    if isinstance(backend, LlamaCppBackend):
        agent.close()
""",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=cli_env(tmp_path / "home")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(tiny_gguf.ANSWER) == 2
    assert done.stderr == ""
