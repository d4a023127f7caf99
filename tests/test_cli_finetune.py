"""`/rate` in chat, `oss-agent sessions rate` and `sessions export --format sft`, end to end against a fake Ollama."""

from __future__ import annotations

import importlib.util
import json

from cli_helpers import cli_env, quit_chat, run_cli, say, serve, spawn_chat
from fake_ollama import FakeOllama, call_text, final_text

from agent.harmony.encoding import get_encoding

KEEP = [] if importlib.util.find_spec("datasketch") else ["--keep-duplicates"]  # near duplicates need `finetune`
from agent.training.examples import IGNORE


def test_a_rated_chat_exports_the_prompts_ollama_received(tmp_path, tools_file):
    fake = FakeOllama(
        [
            call_text("get_weather", '{"city":"Paris"}', "Need the weather for Paris."),
            final_text("It is sunny in Paris.", "The tool says sunny."),
            final_text("You are welcome.", "Polite."),
            final_text("Another chat.", "Other."),
        ]
    )
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        child = spawn_chat("-t", str(tools_file), env=env)
        say(child, "/rate good")
        child.expect_exact("nothing saved to rate yet")
        say(child, "Weather in Paris?")
        child.expect_exact("2 steps")
        say(child, "Thanks!")
        child.expect_exact("You are welcome.")
        say(child, "/rate good")
        child.expect_exact("rated good: session")
        say(child, "/rate meh")
        child.expect_exact("usage: /rate good|bad")
        quit_chat(child)
        other = run_cli("run", "Something else?", env=env)
        assert other.returncode == 0, other.stderr

    listed = run_cli("sessions", env=env)
    assert "good" in listed.stdout
    data = tmp_path / "data.jsonl"
    exported = run_cli("sessions", "export", "--format", "sft", *KEEP, "--rated", "good", "-o", str(data), env=env)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == ""  # the data went to the file, the report to stderr
    assert f"examples: 2 written to {data} (from 2 turns of 1 sessions)" in exported.stderr
    assert "tool calls: functions.get_weather 1" in exported.stderr
    assert "the gpt-oss guides suggest at least 1,000 for FAQ-style tasks" in exported.stderr

    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    enc = get_encoding()
    prompts = [r["prompt"] for r in fake.generate_requests]
    first_turn, second_turn = rows
    text = enc.decode(first_turn["input_ids"])
    assert enc.decode(first_turn["input_ids"][: first_turn["meta"]["prompt_tokens"]]) == prompts[0]
    assert text.startswith(prompts[1])  # the chain's second request, byte for byte
    assert enc.decode(second_turn["input_ids"][: second_turn["meta"]["prompt_tokens"]]) == prompts[2]
    trained = enc.decode(
        [t for t, label in zip(first_turn["input_ids"], first_turn["labels"], strict=True) if label != IGNORE]
    )
    assert trained.startswith("<|channel|>analysis<|message|>Need the weather for Paris.<|end|>")
    assert trained.endswith("<|channel|>final<|message|>It is sunny in Paris.<|return|>")
    assert '"temp_c": 21' not in trained

    session = first_turn["meta"]["session"]
    rated = run_cli("sessions", "rate", session[:6], "bad", env=env)
    assert rated.returncode == 0 and f"session {session} rated bad" in rated.stderr
    again = run_cli("sessions", "export", "--format", "sft", *KEEP, "--rated", "good", env=env)
    assert again.returncode == 0 and again.stdout == "" and "nothing was exported" in again.stderr
    everything = run_cli("sessions", "export", "--format", "sft", *KEEP, "--all", env=env)
    assert len(everything.stdout.splitlines()) == 3  # JSONL on stdout without -o
    assert "examples: 3 written (from 3 turns of 2 sessions)" in everything.stderr


def test_export_errors_are_one_line(tmp_path):
    env = cli_env(tmp_path)
    nothing = run_cli("sessions", "export", "--format", "sft", *KEEP, env=env)
    assert nothing.returncode != 0
    assert "name the sessions to export (ids or prefixes), or pass --all" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    two = run_cli("sessions", "export", "a", "b", env=env)
    assert two.returncode != 0 and "exports one session" in two.stderr
    bad_date = run_cli("sessions", "export", "--format", "sft", *KEEP, "--all", "--since", "yesterday", env=env)
    assert bad_date.returncode != 0 and "--since takes a date like" in bad_date.stderr
    unknown = run_cli("sessions", "rate", "nope", "good", env=env)
    assert unknown.returncode != 0 and "no saved session 'nope'" in unknown.stderr


def test_a_session_with_an_adapter_resumes_with_it(tmp_path):
    from agent.cli import build
    from agent.cli.options import resolve
    from agent.sessions import SavedSession, SessionInfo

    adapter = tmp_path / "finetuned_adapter"
    options = resolve({"backend": "transformers", "adapter": str(adapter)})
    meta = build.session_meta(options)
    assert meta["adapter"] == str(adapter.resolve())
    saved = SavedSession(SessionInfo("abc", 0.0, 0.0, "t", 1, {"backend": "transformers", **meta}))
    assert build.options_for_session(resolve({}), saved).adapter == str(adapter.resolve())
    assert build.options_for_session(resolve({"adapter": "other"}), saved).adapter == "other"  # a flag wins
    assert "adapter" not in build.session_meta(resolve({}))
