"""The chat in a pseudo-terminal: what is left on screen after Ctrl-C, spinners, banners and panels."""

from __future__ import annotations

import io

import pytest
from cli_helpers import StallingFake, cli_env, closed_port, quit_chat, run_cli, say, serve, spawn_chat
from fake_ollama import FakeOllama, call_text, final_text

SLOW_TOOLS = '''\
import asyncio

from agent import tool


@tool
async def slow_lookup(q: str) -> str:
    """Look something up, slowly.

    Args:
        q: The query.
    """
    await asyncio.sleep(300)
    return "found"


@tool(requires_approval=True)
async def slow_cleanup(path: str) -> str:
    """Clean up a folder, slowly; asks first.

    Args:
        path: The folder.
    """
    await asyncio.sleep(300)
    return "cleaned"
'''


@pytest.fixture
def slow_tools(tmp_path):
    path = tmp_path / "slow_tools.py"
    path.write_text(SLOW_TOOLS, encoding="utf-8")
    return path


def recording(child) -> io.StringIO:
    """Everything the chat writes from now on."""
    log = io.StringIO()
    child.logfile_read = log
    return log


def test_ctrl_c_during_a_tool_stops_its_spinner(tmp_path, slow_tools):
    fake = FakeOllama([call_text("slow_lookup", '{"q": "x"}'), final_text("Short answer.", "Ok.")])
    with serve(fake) as url:
        child = spawn_chat("-t", str(slow_tools), env=cli_env(tmp_path, url))
        say(child, "Look it up")
        child.expect_exact("running functions.slow_lookup")
        child.sendintr()
        child.expect_exact("stopped")
        after = recording(child)
        say(child, "A short one then")
        child.expect_exact("Short answer.")
        child.expect_exact("1 step")
        quit_chat(child)
    assert "Short answer." in after.getvalue()
    assert "slow_lookup" not in after.getvalue()  # the spinner of the cancelled call is gone for good


def test_ctrl_c_while_the_answer_streams_is_not_echoed_over_it(tmp_path):
    answer = "\n\n".join(f"Paragraph {i}: " + "the answer goes on and on " * 5 for i in range(5))
    fake = StallingFake([final_text(answer, "Ok."), final_text("Short answer.", "Ok.")], stall_at={0: 60})
    with serve(fake) as url:
        child = spawn_chat(env=cli_env(tmp_path, url))
        say(child, "Tell me a long story")
        child.expect_exact("Paragraph")
        assert fake.stalled.wait(30)
        log = recording(child)
        child.sendintr()
        child.expect_exact("stopped")
        # a "^C" echoed after a full-width Markdown line wraps the cursor, and the partial answer is drawn twice
        assert "^C" not in log.getvalue()
        say(child, "A short one then")
        child.expect_exact("Short answer.")
        quit_chat(child)


def test_the_banner_warns_at_once_about_a_stopped_server_and_a_missing_vocabulary(tmp_path):
    empty = tmp_path / "no-vocabulary"
    empty.mkdir()
    env = cli_env(tmp_path, f"http://127.0.0.1:{closed_port()}", TIKTOKEN_ENCODINGS_BASE=str(empty))
    child = spawn_chat(env=env)
    child.expect_exact("/help for commands")
    child.expect_exact("warning: cannot load the Harmony vocabulary")
    child.expect_exact("warning: cannot reach Ollama")
    quit_chat(child)


def test_resuming_a_one_turn_session_says_1_turn(tmp_path):
    fake = FakeOllama([final_text("Hello there."), final_text("Again.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        assert run_cli("run", "Hi", env=env).returncode == 0
        child = spawn_chat("-c", env=env)
        child.expect_exact("resumed session")
        child.expect(r"\((\d+ turns?)\)")
        assert child.match.group(1) == "1 turn"
        quit_chat(child)


def test_an_approved_call_has_its_spinner_while_it_runs(tmp_path, slow_tools):
    fake = FakeOllama([call_text("slow_cleanup", '{"path": "build"}'), final_text("Stopped it.", "Ok.")])
    with serve(fake) as url:
        child = spawn_chat("-t", str(slow_tools), env=cli_env(tmp_path, url))
        say(child, "Clean up build")
        child.expect_exact("[a]lways")
        child.send("y\r")
        child.expect_exact("running functions.slow_cleanup")  # the spinner is back once the user said yes
        child.sendintr()
        child.expect_exact("stopped")
        quit_chat(child)


def test_set_model_and_clear_in_a_chat(tmp_path):
    fake = FakeOllama([final_text("One."), final_text("Two.")], models=("gpt-oss:20b", "gpt-oss:120b"))
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat(env=env)
        say(child, "/set temperature 0.3")
        child.expect_exact("temperature: 0.3")
        say(child, "/set")
        child.expect_exact("model options: temperature 0.3")
        say(child, "/set temprature 1")
        child.expect_exact("unknown model option 'temprature'")
        say(child, "/model nope:1b")
        child.expect_exact("does not have the model")
        say(child, "hello")
        child.expect_exact("One.")
        say(child, "/model gpt-oss:120b")
        child.expect_exact("model: gpt-oss:120b")
        say(child, "and again")
        child.expect_exact("Two.")
        say(child, "/clear")
        child.expect_exact("\x1b[2J")
        quit_chat(child)
    first, second = fake.generate_requests
    assert first["model"] == "gpt-oss:20b" and first["options"]["temperature"] == 0.3
    assert second["model"] == "gpt-oss:120b" and second["options"]["temperature"] == 0.3
    assert "hello" in second["prompt"]  # the conversation went on with the other model


def test_resuming_reprints_the_last_turns(tmp_path):
    fake = FakeOllama([final_text(f"Answer {n}.") for n in range(1, 5)] + [final_text("Next.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        first = run_cli("run", "Question 1", env=env)
        assert first.returncode == 0, first.stderr
        for n in (2, 3, 4):
            assert run_cli("run", "-c", f"Question {n}", env=env).returncode == 0
        child = spawn_chat("-c", env=env)
        shown = recording(child)
        child.expect_exact("/help for commands")
        quit_chat(child)
    screen = shown.getvalue().partition("(4 turns): Question 1")[2]
    assert "1 earlier turn (oss-agent sessions show" in screen
    assert "Question 1" not in screen and "Answer 1." not in screen
    positions = [
        screen.index(text)
        for text in ("> Question 2", "Answer 2.", "> Question 3", "Answer 3.", "> Question 4", "Answer 4.")
    ]
    assert positions == sorted(positions)


def test_a_spinner_counts_the_seconds_until_the_first_token(tmp_path):
    """Prefill on a CPU can take a minute: from the moment a request is sent something moves, in chat and run."""
    import pexpect
    import sys

    fake = StallingFake(
        [final_text("Here it is.", "Ok."), final_text("Second.", "Ok.")], stall_at={0: 0, 1: 0}, resume=True
    )
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat(env=env)
        say(child, "Hello?")
        assert fake.stalled.wait(30)
        child.expect(r"waiting for the model… \d+ s")
        fake.release.set()
        child.expect_exact("Here it is.")
        quit_chat(child)
        fake.stalled.clear()
        fake.release.clear()
        run = pexpect.spawn(
            sys.executable,
            ["-m", "agent.cli", "run", "--no-save", "Again?"],
            env=env,
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 120),
        )
        assert fake.stalled.wait(30)
        run.expect(r"waiting for the model… \d+ s")
        fake.release.set()
        run.expect_exact("Second.")
        run.expect(pexpect.EOF)


def test_the_approval_prompt_shows_the_call_in_a_panel_then_asks_on_its_own_line(tmp_path, slow_tools):
    arguments = '{"path": "/tmp/build", "note": "' + "x" * 150 + '"}'
    fake = FakeOllama([call_text("slow_cleanup", arguments), final_text("Left alone.", "Ok.")])
    with serve(fake) as url:
        child = spawn_chat("-t", str(slow_tools), env=cli_env(tmp_path, url))
        say(child, "Clean up")
        screen = recording(child)
        child.expect_exact("[a]lways:")
        child.send("n\r")
        child.expect_exact("Left alone.")
        quit_chat(child)
    import re

    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).replace("\r", "")
    lines = shown.split("\n")
    (question,) = [line for line in lines if "[y]es / [n]o / [a]lways" in line]  # redrawn in place as typed
    assert question.strip().startswith("Run functions.slow_cleanup? [y]es / [n]o / [a]lways:")
    assert "{" not in question and "/tmp/build" not in question  # the arguments are in the panel, not here
    above = shown[: shown.index("Run functions.slow_cleanup?")]
    assert "functions.slow_cleanup wants to run" in above
    assert '"path": "/tmp/build"' in above and "xxxxxxxxxx" in above  # the arguments, pretty, in the panel
    assert "╭" in above and "╰" in above
