"""`oss-agent chat` driven through a pseudo-terminal against a fake Ollama server."""

from __future__ import annotations

import pexpect
from cli_helpers import PROMPT, StallingFake, cli_env, quit_chat, run_cli, say, serve, spawn_chat
from fake_ollama import FakeOllama, call_text, final_text

UP = "\x1b[A"


def test_two_turns_with_a_tool_then_reset_then_resume(tmp_path, tools_file):
    fake = FakeOllama(
        [
            call_text("get_weather", '{"city": "Paris"}', "Need the weather for Paris."),
            final_text("It is **sunny** in Paris.", "The tool says sunny."),
            final_text("You are welcome.", "Polite."),
            final_text("Fresh start here.", "New chat."),
            final_text("Resumed fine.", "Continuing."),
        ]
    )
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat("-t", str(tools_file), env=env)
        child.expect_exact("/help for commands")
        say(child, "Weather in Paris?")
        child.expect_exact("Need the weather for Paris.")  # reasoning, streamed
        child.expect_exact("functions.get_weather")  # the tool panel
        child.expect_exact('"temp_c": 21')
        child.expect_exact("sunny")
        child.expect_exact("2 steps")  # the footer
        say(child, "Thanks!")
        child.expect_exact("You are welcome.")
        child.expect_exact("1 step")
        say(child, "/reset")
        child.expect_exact("new conversation")
        say(child, "Hello again")
        child.expect_exact("Fresh start here.")
        quit_chat(child)

        child = spawn_chat("-c", env=env)  # the tools come back from the saved session
        child.expect_exact("resumed session")
        child.expect_exact("Hello again")
        say(child, "Still there?")
        child.expect_exact("Resumed fine.")
        quit_chat(child)
    prompts = [r["prompt"] for r in fake.generate_requests]
    assert "Weather in Paris?" in prompts[2] and "It is **sunny** in Paris." in prompts[2]
    assert "Weather in Paris?" not in prompts[3]  # /reset
    assert "Hello again" in prompts[4] and "Fresh start here." in prompts[4] and "get_weather" in prompts[4]
    assert "Weather in Paris?" not in prompts[4]


def test_ctrl_c_stops_generation_and_keeps_the_conversation(tmp_path):
    long_thought = "Let me think about this story at great length. " * 20
    fake = StallingFake([final_text("never shown", long_thought), final_text("Short answer.", "Ok.")], stall_at={0: 12})
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat(env=env)
        say(child, "Tell me a long story")
        child.expect_exact("Let me think")
        assert fake.stalled.wait(30)
        child.sendintr()
        child.expect_exact("stopped")
        say(child, "A short one then")
        child.expect_exact("Short answer.")
        quit_chat(child)
    second = fake.generate_requests[1]["prompt"]
    assert "Tell me a long story" in second and "A short one then" in second
    listed = run_cli("sessions", env=env)
    assert "Tell me a long story" in listed.stdout and " 2 " in listed.stdout  # both turns saved


def test_ctrl_c_at_the_prompt_clears_the_line(tmp_path):
    fake = FakeOllama([final_text("Only this.")])
    with serve(fake) as url:
        child = spawn_chat(env=cli_env(tmp_path, url))
        child.expect_exact(PROMPT)
        child.send("half typed")
        child.sendintr()
        say(child, "real question")
        child.expect_exact("Only this.")
        quit_chat(child)
    assert "half typed" not in fake.generate_requests[0]["prompt"]


def test_approval_yes_no_always(tmp_path, tools_file):
    delete = call_text("delete_file", '{"path": "a.txt"}', "Delete it.")
    fake = FakeOllama(
        [delete, final_text("Not deleted."), delete, final_text("Deleted."), delete, final_text("Deleted again.")]
    )
    with serve(fake) as url:
        child = spawn_chat("-t", str(tools_file), env=cli_env(tmp_path, url))
        say(child, "Delete a.txt")
        child.expect_exact("[a]lways")
        child.send("n\r")
        child.expect_exact("Not deleted.")
        say(child, "Please delete a.txt")
        child.expect_exact("[a]lways")
        child.send("a\r")
        child.expect_exact("Deleted.")
        say(child, "Once more")
        child.expect_exact("Deleted again.")  # no question this time
        quit_chat(child)
    prompts = [r["prompt"] for r in fake.generate_requests]
    assert "the user declined to run functions.delete_file" in prompts[1]
    assert "deleted a.txt" in prompts[3] and "deleted a.txt" in prompts[5]


def test_slash_commands(tmp_path, tools_file):
    fake = FakeOllama([final_text("First.", "Hidden thought."), final_text("Second.", "Thought two.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat("-t", str(tools_file), env=env)
        say(child, "/help")
        child.expect_exact("copy a file into the sandbox")
        say(child, "/tools")
        child.expect_exact("functions.get_weather")
        child.expect_exact("asks first")
        say(child, "/effort high")
        child.expect_exact("reasoning effort: high")
        say(child, "/reasoning hide")
        child.expect_exact("reasoning: hide")
        say(child, "/raw")
        child.expect_exact("nothing sent to the model yet")
        say(child, "/upload data.csv")
        child.expect_exact("enable it with -t python")
        say(child, "/nope")
        child.expect_exact("unknown command /nope")
        say(child, "first question")
        child.expect_exact("reasoning hidden")
        child.expect_exact("First.")
        say(child, "/reasoning")
        child.expect_exact("Hidden thought.")
        say(child, "/raw")
        child.expect_exact("<|start|>user<|message|>first question<|end|>")
        say(child, "/save My weather chat")
        child.expect_exact("saved as")
        say(child, "/sessions")
        child.expect_exact("My weather chat")
        say(child, "/exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0

        child = spawn_chat(env=env)  # prompt history survives: Up recalls earlier prompts
        child.expect_exact(PROMPT)
        child.send(UP)
        child.expect_exact("/exit")
        child.send(UP * 5)  # /sessions, /save, /raw, /reasoning, then the question
        child.expect_exact("question")  # redrawn by screen diff: only the changed characters are sent
        child.send("\r")
        child.expect_exact("Second.")
        quit_chat(child)
    assert "Reasoning: high" in fake.generate_requests[0]["prompt"]
    assert (
        fake.generate_requests[1]["prompt"]
        .rstrip()
        .endswith("<|start|>user<|message|>first question<|end|><|start|>assistant")
    )


def test_errors_in_a_turn_keep_the_chat_alive(tmp_path):
    fake = FakeOllama([final_text("Back online.")])
    with serve(fake) as url:
        child = spawn_chat("-m", "nope:1b", env=cli_env(tmp_path, url))
        say(child, "hello")
        child.expect_exact("error:")
        child.expect_exact("ollama pull nope:1b")
        quit_chat(child)
    assert "Traceback" not in (child.before or "")


def test_chat_needs_a_terminal(tmp_path):
    done = run_cli("chat", env=cli_env(tmp_path, "http://127.0.0.1:9"))
    assert done.returncode == 1 and "needs a terminal" in done.stderr


def test_context_shows_use_and_compact_forces_a_compaction_that_a_resume_keeps(tmp_path):
    fake = FakeOllama([final_text("One."), final_text("Two."), final_text("Three."), final_text("After resume.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat(env=env)
        for question in ("first question", "second question", "third question"):
            say(child, question)
            child.expect_exact("1 step")
        say(child, "/context")
        child.expect_exact("tokens (0%) in 9 messages")  # user, analysis, final per turn
        child.expect_exact("history policy ShrinkToolResults: compacts past")
        child.expect_exact("/compact would: dropped the oldest turn")
        say(child, "/compact")
        child.expect_exact("note: history compacted: dropped the oldest turn")
        say(child, "/context")
        child.expect_exact("in 6 messages")
        quit_chat(child)
        child = spawn_chat("-c", env=env)
        say(child, "and now?")
        child.expect_exact("After resume.")
        quit_chat(child)
    resumed = fake.generate_requests[-1]["prompt"]
    assert "first question" not in resumed and "second question" in resumed and "and now?" in resumed


def test_a_prompt_interrupted_before_any_output_stays(tmp_path):
    """Ctrl-C while the model is still reading the prompt (no token yet): the prompt stays in the conversation
    and in the session, so "go on" follows it, and a resumed session has it too."""
    fake = StallingFake(
        [final_text("never shown"), final_text("The capital is Oslo.", "Ok."), final_text("Still Oslo.", "Ok.")],
        stall_at={0: 0},
    )
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat(env=env)
        say(child, "What is the capital of Norway?")
        assert fake.stalled.wait(30)
        child.sendintr()
        child.expect_exact("stopped")
        say(child, "go on")
        child.expect_exact("The capital is Oslo.")
        quit_chat(child)
        second = fake.generate_requests[1]["prompt"]
        assert second.index("What is the capital of Norway?") < second.index("go on")
        resumed = spawn_chat("--continue", env=env)
        say(resumed, "Sure?")
        resumed.expect_exact("Still Oslo.")
        quit_chat(resumed)
    third = fake.generate_requests[2]["prompt"]
    assert "What is the capital of Norway?" in third and "go on" in third and "The capital is Oslo." in third


def test_slash_habits_from_ollama(tmp_path):
    fake = FakeOllama([final_text("Hi!")])
    with serve(fake) as url:
        child = spawn_chat(env=cli_env(tmp_path, url))
        say(child, "/?")
        child.expect_exact("/reset")
        say(child, "/show")
        child.expect_exact("model")
        child.expect_exact("gpt-oss:20b")
        child.expect_exact("effort")
        child.expect_exact("medium")
        say(child, "/bye")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
