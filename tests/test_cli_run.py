"""`oss-agent run`, `pull`, `doctor`, `sessions` and the help texts, as real processes against a fake Ollama."""

from __future__ import annotations

import json

import pytest
from cli_helpers import StallingFake, cli_env, closed_port, error_lines, run_cli, serve
from fake_ollama import Completion, FakeOllama, call_text, final_text

ANSWER = "It is **sunny** in Paris."


def weather_script() -> list[str]:
    return [call_text("get_weather", '{"city": "Paris"}', "Need the weather."), final_text(ANSWER, "Sunny.")]


def test_run_prints_only_the_answer_on_stdout(tmp_path, tools_file):
    fake = FakeOllama(weather_script())
    with serve(fake) as url:
        done = run_cli("run", "-t", str(tools_file), "Weather in Paris?", env=cli_env(tmp_path, url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ANSWER + "\n"
    assert "Need the weather." in done.stderr  # reasoning on stderr
    assert "functions.get_weather" in done.stderr and '"temp_c": 21' in done.stderr  # the tool panel
    assert "2 steps" in done.stderr  # the footer
    assert "Weather in Paris?" in fake.generate_requests[0]["prompt"]


def test_run_reads_the_prompt_from_stdin(tmp_path):
    fake = FakeOllama([final_text("Four.")])
    with serve(fake) as url:
        done = run_cli("run", "-", env=cli_env(tmp_path, url), stdin="What is 2+2?\n")
        piped = run_cli("run", env=cli_env(tmp_path, url), stdin="")
    assert done.returncode == 0 and done.stdout == "Four.\n"
    assert "What is 2+2?" in fake.generate_requests[0]["prompt"]
    assert piped.returncode == 1 and error_lines(piped.stderr)[0].startswith(
        "error: the prompt read from stdin is empty"
    )


def test_piped_stdin_comes_before_the_prompt_argument_and_an_empty_prompt_is_refused(tmp_path):
    fake = FakeOllama([final_text("A summary.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        done = run_cli("run", "Summarise this", env=env, stdin="The document.\n")
        empty = run_cli("run", "", env=env, stdin="")
        blank = run_cli("run", "   ", env=env, stdin="")
    assert done.returncode == 0, done.stderr
    assert "<|start|>user<|message|>The document.\n\nSummarise this<|end|>" in fake.generate_requests[0]["prompt"]
    for refused in (empty, blank):
        assert refused.returncode == 1
        assert error_lines(refused.stderr) == [
            'error: the prompt is empty; pass a question (oss-agent run "...") or pipe text on stdin'
        ]
    assert len(fake.generate_requests) == 1


def test_json_events_carry_the_session_id_to_follow_up_with(tmp_path):
    fake = FakeOllama([final_text("First."), final_text("Second.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        first = run_cli("run", "--json", "Remember 7", env=env)
        events = [json.loads(line) for line in first.stdout.splitlines()]
        session_id = events[0]["session_id"]
        assert {e["session_id"] for e in events} == {session_id}
        second = run_cli("run", "--json", "--session", session_id, "What did I say?", env=env)
        unsaved = run_cli("run", "--json", "--no-save", "hi", env=env)
    assert all(json.loads(line)["session_id"] == session_id for line in second.stdout.splitlines())
    assert "Remember 7" in fake.generate_requests[1]["prompt"]
    assert all("session_id" not in json.loads(line) for line in unsaved.stdout.splitlines())


def test_json_output_is_one_event_per_line(tmp_path, tools_file):
    fake = FakeOllama(weather_script())
    with serve(fake) as url:
        done = run_cli("run", "--json", "-t", str(tools_file), "Weather in Paris?", env=cli_env(tmp_path, url))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "message" and types[-1] == "done"
    assert {"reasoning", "tool_call", "tool_result", "text", "step"} <= set(types)
    call = next(e for e in events if e["type"] == "tool_call")["call"]
    assert call["recipient"] == "functions.get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    result = next(e for e in events if e["type"] == "tool_result")
    assert json.loads(result["output"])["sky"] == "sunny" and result["error"] is None
    assert "".join(e["text"] for e in events if e["type"] == "text") == ANSWER
    done_event = events[-1]["result"]
    assert done_event["output"] == ANSWER and len(done_event["steps"]) == 2
    assert done_event["messages"][0]["role"] == "user"
    assert done_event["usage"]["completion_tokens"] > 0


ERROR_CASES = {
    "ollama down": ([], [], "cannot reach Ollama"),
    "model missing": ([], ["-m", "nope:1b"], "ollama pull nope:1b"),
    "context overflow": ([final_text("never")], ["--num-ctx", "64"], "context"),
    "max steps": (
        [call_text("get_weather", '{"city": "A"}'), call_text("get_weather", '{"city": "B"}')],
        ["--max-steps", "2"],
        "no final answer after 2 steps",
    ),
    "unparseable output": (["<|channel|>comm"] * 3, [], "could not be parsed 3 times"),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_expected_errors_are_one_line_without_traceback(tmp_path, tools_file, case, debug):
    script, flags, expected = ERROR_CASES[case]
    fake = FakeOllama(script)
    args = ["run", "-t", str(tools_file), *flags, *(["--debug"] if debug else []), "Weather?"]
    with serve(fake) as url:
        host = f"http://127.0.0.1:{closed_port()}" if case == "ollama down" else url
        done = run_cli(*args, env=cli_env(tmp_path, host))
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert done.stderr.rstrip().endswith(lines[0])
    assert ("Traceback" in done.stderr) == debug
    assert done.stdout == ""


def test_errors_with_json_are_also_an_error_event(tmp_path):
    with serve(FakeOllama([])) as url:
        done = run_cli("run", "--json", "-m", "nope:1b", "hi", env=cli_env(tmp_path, url))
    assert done.returncode == 1
    last = json.loads(done.stdout.splitlines()[-1])
    assert last["type"] == "error" and last["error"] == "ModelNotFoundError" and "nope:1b" in last["message"]


BAD_TOOL_FILES = {
    "syntax error": ("def broken(:\n    pass\n", "line 1", "syntax error"),
    "import error": ("import os\nimport no_such_module_here\n", "line 2", "ModuleNotFoundError"),
    "runtime error": ("from agent import tool\n\nx = 1\nraise RuntimeError('boom')\n", "line 4", "boom"),
    "no tools": ("def plain(x: int) -> int:\n    return x\n", "defines no tools", "@tool"),
}


@pytest.mark.parametrize("case", BAD_TOOL_FILES, ids=list(BAD_TOOL_FILES))
def test_bad_tools_file_is_reported_with_file_and_line(tmp_path, case):
    source, where, what = BAD_TOOL_FILES[case]
    path = tmp_path / "my_tools.py"
    path.write_text(source, encoding="utf-8")
    done = run_cli("run", "-t", str(path), "hi", env=cli_env(tmp_path, "http://127.0.0.1:9"))
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "my_tools.py" in lines[0] and where in lines[0] and what in lines[0]


def test_missing_tools_file_and_unknown_builtin(tmp_path):
    env = cli_env(tmp_path, "http://127.0.0.1:9")
    missing = run_cli("run", "-t", str(tmp_path / "nope.py"), "hi", env=env)
    assert missing.returncode == 1 and "nope.py does not exist" in error_lines(missing.stderr)[0]
    unknown = run_cli("run", "-t", "calculator", "hi", env=env)
    assert unknown.returncode == 1 and error_lines(unknown.stderr) == [
        "error: unknown built-in tool 'calculator': the built-ins are browser and python; "
        "a tools file is a path to a .py file"
    ]


def test_sessions_are_saved_listed_shown_continued_and_removed(tmp_path):
    fake = FakeOllama([final_text("Bonjour!", "Greet."), final_text("Au revoir!", "Bye.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        first = run_cli("run", "-s", "Answer in French.", "--effort", "low", "Say hello", env=env)
        assert first.returncode == 0, first.stderr
        listed = run_cli("sessions", env=env)
        assert listed.returncode == 0 and "Say hello" in listed.stdout
        second = run_cli("run", "-c", "Now say goodbye", env=env)
        assert second.returncode == 0, second.stderr
    prompt = fake.generate_requests[1]["prompt"]
    # the earlier turn, its instructions and effort are restored; its reasoning is dropped (CoT rule)
    assert "Say hello" in prompt and "Bonjour!" in prompt and "Greet." not in prompt
    assert "Answer in French." in prompt and "Reasoning: low" in prompt
    session_id = run_cli("sessions", env=env).stdout.splitlines()[1].split()[0]
    shown = run_cli("sessions", "show", session_id[:6], env=env)
    assert shown.returncode == 0 and "Bonjour!" in shown.stdout and "Now say goodbye" in shown.stdout
    removed = run_cli("sessions", "rm", session_id, env=env)
    assert removed.returncode == 0
    gone = run_cli("sessions", "show", session_id, env=env)
    assert gone.returncode == 1 and "no saved session" in error_lines(gone.stderr)[0]


def test_no_save_leaves_no_session(tmp_path):
    with serve(FakeOllama([final_text("ok")])) as url:
        env = cli_env(tmp_path, url)
        assert run_cli("run", "--no-save", "hi", env=env).returncode == 0
        assert "no saved sessions" in run_cli("sessions", env=env).stderr
        cont = run_cli("run", "-c", "again", env=env)
    assert cont.returncode == 1 and "no saved session to continue" in error_lines(cont.stderr)[0]


def test_pull_shows_progress_and_reports_failure(tmp_path):
    with serve(FakeOllama([])) as url:
        env = cli_env(tmp_path, url)
        ok = run_cli("pull", "gpt-oss:20b", env=env)
        bad = run_cli("pull", "nope:1b", env=env)
    assert ok.returncode == 0 and "success" in ok.stderr and "gpt-oss:20b is ready" in ok.stderr
    order = [ok.stderr.index(text) for text in ("pulling manifest", "1a2b3c", "verifying", "success", "is ready")]
    assert order == sorted(order)  # what comes after the download is printed below its bar
    assert bad.returncode == 1 and "nope:1b" in error_lines(bad.stderr)[0]


def test_doctor_passes_against_a_working_server(tmp_path):
    with serve(FakeOllama([final_text("OK")])) as url:
        done = run_cli("doctor", env=cli_env(tmp_path, url))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (
        "Harmony vocabulary",
        "Ollama: version 0.12.6",
        "model: gpt-oss:20b is pulled",
        "raw Harmony mode: answered 'OK'",
        "Docker",
    ):
        assert name in done.stdout
    assert "all set" in done.stdout


def test_doctor_fails_when_the_model_is_missing(tmp_path):
    with serve(FakeOllama([])) as url:
        done = run_cli("doctor", "-m", "nope:1b", env=cli_env(tmp_path, url))
    assert done.returncode == 1
    assert "ollama pull" in done.stdout.lower() or "oss-agent pull nope:1b" in done.stdout
    down = run_cli("doctor", env=cli_env(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    assert down.returncode == 1 and "ollama serve" in down.stdout


def test_doctor_reports_unparseable_raw_output(tmp_path):
    with serve(FakeOllama(["no harmony markers here"] * 3)) as url:
        done = run_cli("doctor", env=cli_env(tmp_path, url))
    assert done.returncode == 1 and "raw Harmony mode" in done.stdout


@pytest.mark.parametrize("command", [[], ["chat"], ["run"], ["doctor"], ["pull"], ["models"], ["sessions"]])
def test_help_reads_well(tmp_path, command):
    done = run_cli(*command, "--help", env=cli_env(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("usage: oss-agent")
    assert all(len(line) <= 120 for line in done.stdout.splitlines())  # COLUMNS=120
    if not command:
        for word in ("chat", "run", "doctor", "pull", "models", "sessions", "examples"):
            assert word in done.stdout
    if command in (["chat"], ["run"]):
        for flag in (
            "--model",
            "--host",
            "--backend",
            "--base-url",
            "--tools",
            "--instructions",
            "--effort",
            "--continue",
            "--session",
            "--yes",
            "--debug",
            "--config",
            "--option KEY VALUE",
        ):
            assert flag in done.stdout
    if command == ["run"]:
        assert "-f FILE, --file FILE" in done.stdout and "-a FILE, --attach FILE" in done.stdout
    if command == ["sessions"]:
        assert "export" in done.stdout


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    fake = FakeOllama([final_text("one"), final_text("two")])
    (tmp_path / "config.toml").write_text('effort = "high"\ninstructions = "Be brief."\n', encoding="utf-8")
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        assert run_cli("run", "hi", env=env).returncode == 0
        assert run_cli("run", "--effort", "low", "hi", env={**env, "OSS_AGENT_EFFORT": "medium"}).returncode == 0
    first, second = [r["prompt"] for r in fake.generate_requests]
    assert "Reasoning: high" in first and "Be brief." in first
    assert "Reasoning: low" in second


def test_bad_config_file_is_one_line(tmp_path):
    (tmp_path / "config.toml").write_text('effort = "extreme"\n', encoding="utf-8")
    done = run_cli("run", "hi", env=cli_env(tmp_path, "http://127.0.0.1:9"))
    assert done.returncode == 1 and "effort must be one of" in error_lines(done.stderr)[0]
    (tmp_path / "config.toml").write_text("colour = 1\n", encoding="utf-8")
    done = run_cli("run", "hi", env=cli_env(tmp_path, "http://127.0.0.1:9"))
    assert done.returncode == 1 and "unknown setting 'colour'" in error_lines(done.stderr)[0]


def test_a_stream_error_mid_answer_is_one_line(tmp_path):
    fake = StallingFake([Completion(final_text("partial answer"), error_after=3)])
    with serve(fake) as url:
        done = run_cli("run", "hi", env=cli_env(tmp_path, url))
    assert done.returncode == 1
    assert "llama runner process has terminated" in error_lines(done.stderr)[0]


def test_non_utf8_bytes_in_the_prompt_are_replaced_not_fatal(tmp_path):
    import subprocess
    import sys

    fake = FakeOllama([final_text("Got it."), final_text("Also.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        piped = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "--no-save"],
            input=b"caf\xe9 \xff ok\n",
            capture_output=True,
            env=env,
            timeout=60,
        )
        argv = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run", "--no-save", b"bad \xff byte"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=60,
        )
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout == b"Got it.\n"
    assert argv.returncode == 0, argv.stderr.decode()
    assert argv.stdout == b"Also.\n"
    assert "caf\ufffd \ufffd ok" in fake.generate_requests[0]["prompt"]
    assert "bad \ufffd byte" in fake.generate_requests[1]["prompt"]


def test_a_tools_py_of_the_users_own_is_one_line_saying_to_rename_it(tmp_path):
    import subprocess
    import sys

    (tmp_path / "tools.py").write_text("X = 1\n", encoding="utf-8")
    (tmp_path / "script.py").write_text("from agent import Agent\n", encoding="utf-8")
    env = cli_env(tmp_path / "home", "http://127.0.0.1:9")
    script = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60
    )
    cli = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "hi"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    expected = f"your own {tmp_path / 'tools.py'} hides oss-agent's `tools` package; rename that file"
    assert script.returncode == 1 and expected in script.stderr.splitlines()[-1]
    assert cli.returncode == 1 and error_lines(cli.stderr) == [f"error: {expected} (for example to my_tools.py)"]


def test_run_with_hidden_reasoning_points_to_the_flag_not_the_chat_command(tmp_path):
    fake = FakeOllama([final_text("Four.", "Two plus two.")])
    with serve(fake) as url:
        done = run_cli("run", "--reasoning", "hide", "2+2?", env=cli_env(tmp_path, url))
    assert done.returncode == 0 and done.stdout == "Four.\n"
    assert "(reasoning hidden, 13 characters; run with --reasoning show to see it)" in done.stderr
    assert "/reasoning" not in done.stderr


def test_piped_output_is_not_wrapped_at_the_terminal_width(tmp_path):
    env = cli_env(tmp_path, f"http://127.0.0.1:{closed_port()}", COLUMNS="40")
    done = run_cli("doctor", env=env)
    line = next(line for line in done.stdout.splitlines() if line.startswith("✗ Ollama:"))
    assert line.endswith("(ConnectError)") and len(line) > 40
    fix = next(line for line in done.stdout.splitlines() if "ollama serve" in line)
    assert fix.endswith("OLLAMA_HOST at it")


def test_model_options_from_flags_and_the_config_file_reach_the_server(tmp_path):
    (tmp_path / "config.toml").write_text("[options]\ntop_p = 0.5\ntemperature = 1.0\n", encoding="utf-8")
    fake = FakeOllama([final_text("Cool.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        done = run_cli(
            "run",
            "-o",
            "temperature",
            "0.2",
            "-o",
            "max_tokens",
            "100",
            "-o",
            "num_ctx",
            "4096",
            "-o",
            "seed",
            "7",
            "hi",
            env=env,
        )
        typo = run_cli("run", "-o", "temprature", "1", "hi", env=env)
        wrong = run_cli("run", "-o", "top_k", "many", "hi", env=env)
    assert done.returncode == 0, done.stderr
    sent = fake.generate_requests[0]["options"]
    assert (sent["temperature"], sent["top_p"], sent["num_ctx"], sent["seed"]) == (0.2, 0.5, 4096, 7)
    assert sent["num_predict"] <= 100
    assert error_lines(typo.stderr) == [
        "error: -o: unknown model option 'temprature'; known: temperature, top_p, top_k, seed, num_ctx, max_tokens"
    ]
    assert error_lines(wrong.stderr) == ["error: -o: top_k must be a whole number, not 'many'"]
    assert len(fake.generate_requests) == 1


class _SizedModels(FakeOllama):
    """A fake whose /api/tags lists sizes and parameter counts, as Ollama's does."""

    def handle(self, method, path, body):
        reply = super().handle(method, path, body)
        if path == "/api/tags":
            models = [
                {"name": m, "model": m, "size": 13_800_000_000, "details": {"parameter_size": "20.9B"}}
                for m in self.models
            ]
            reply.lines = [json.dumps({"models": models}).encode()]
        return reply


def test_models_lists_what_the_server_serves(tmp_path):
    fake = _SizedModels([], models=("gpt-oss:20b", "gpt-oss:120b"))
    with serve(fake) as url:
        done = run_cli("models", env=cli_env(tmp_path, url))
    down = run_cli("models", env=cli_env(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["model", "size", "parameters", "context"]
    assert rows[1:] == [
        ["gpt-oss:20b", "13.8", "GB", "20.9B", "131,072"],
        ["gpt-oss:120b", "13.8", "GB", "20.9B", "131,072"],
    ]
    assert down.returncode == 1 and "start it with `ollama serve`" in error_lines(down.stderr)[0]


def test_sessions_export_as_markdown_and_json(tmp_path, tools_file):
    fake = FakeOllama(weather_script())
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        done = run_cli("run", "--json", "-t", str(tools_file), "Weather in Paris?", env=env)
    session_id = json.loads(done.stdout.splitlines()[0])["session_id"]
    markdown = run_cli("sessions", "export", session_id[:6], env=env)
    data = run_cli("sessions", "export", session_id, "--format", "json", env=env)
    assert markdown.returncode == 0, markdown.stderr
    text = markdown.stdout
    assert text.startswith("# Weather in Paris?\n")
    assert text.index("## User\n\nWeather in Paris?") < text.index("**functions.get_weather** called with:")
    assert text.index('"temp_c": 21') < text.index("## Assistant\n\n" + ANSWER)
    assert "<summary>Reasoning</summary>" in text and "Need the weather." in text
    exported = json.loads(data.stdout)
    assert exported["id"] == session_id and exported["settings"]["model"] == "gpt-oss:20b"
    roles = [(m["role"], m["channel"]) for m in exported["messages"]]
    assert roles[0] == ("user", None) and roles[-1] == ("assistant", "final")
    assert exported["messages"][-1]["text"] == ANSWER


def test_f_puts_text_files_into_the_prompt_and_a_needs_the_sandbox(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Herons eat fish.\n", encoding="utf-8")
    blob = tmp_path / "data.bin"
    blob.write_bytes(b"\x00\x01\x02")
    fake = FakeOllama([final_text("Fish.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        done = run_cli("run", "-f", str(notes), "What do herons eat?", env=env, stdin="From stdin.")
        binary = run_cli("run", "-f", str(blob), "hi", env=env)
        attach = run_cli("run", "-a", str(notes), "hi", env=env)
    assert done.returncode == 0, done.stderr
    assert (
        "<|start|>user<|message|>notes.txt:\nHerons eat fish.\n\nFrom stdin.\n\nWhat do herons eat?<|end|>"
        in fake.generate_requests[0]["prompt"]
    )
    assert error_lines(binary.stderr) == [
        f"error: {blob} is not a text file; put it into the sandbox with -a {blob} -t python"
    ]
    assert error_lines(attach.stderr) == ["error: uploads go into the python sandbox: enable it with -t python"]
    assert len(fake.generate_requests) == 1


def test_a_reader_that_stops_early_ends_the_run_quietly(tmp_path):
    import subprocess
    import sys

    fake = FakeOllama([final_text("word " * 200, "Think " * 50)])
    with serve(fake) as url:
        child = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--json", "--no-save", "go"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(tmp_path, url),
        )
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()
        child.stdout.close()  # like `| head -1`
        stderr = child.stderr.read().decode()
        assert child.wait(timeout=60) == 0
    assert json.loads(first)["type"] == "message"
    assert "Traceback" not in stderr and "asynchronous generator" not in stderr, stderr


def test_schema_prints_the_validated_object_and_retries_an_invalid_one(tmp_path):
    schema_file = tmp_path / "person.json"
    schema_file.write_text(
        json.dumps(
            {
                "title": "Person",
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer", "description": "in years"}},
            }
        ),
        encoding="utf-8",
    )
    fake = FakeOllama(
        [
            final_text('{"name": "Ada", "age": "old"}'),  # fails validation: the model is told and tries again
            final_text('{"name": "Ada", "age": 36}'),
            final_text('{"name": "Bo", "age": 7}'),
        ]
    )
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        concise = run_cli("run", "--no-save", "--schema", "name str, age int: in years", "Who?", env=env)
        from_file = run_cli("run", "--no-save", "--schema", str(schema_file), "Who else?", env=env)
        bad = run_cli("run", "--no-save", "--schema", "name text", "x", env=env)
    assert concise.returncode == 0, concise.stderr
    assert json.loads(concise.stdout) == {"name": "Ada", "age": 36}
    assert "age: Input should be a valid integer" in fake.generate_requests[1]["prompt"]
    assert "# Response Formats" in fake.generate_requests[0]["prompt"]
    assert from_file.returncode == 0 and json.loads(from_file.stdout) == {"name": "Bo", "age": 7}
    assert bad.returncode == 1 and error_lines(bad.stderr)[0].startswith("error: --schema: cannot read 'name text'")


def test_schema_file_is_enforced_whole(tmp_path):
    """`--schema FILE`: required, bounds, enums, lengths, patterns, nested objects and arrays all hold; violations go
    back to the model, and when retries run out the run exits 1 naming them."""
    schema_file = tmp_path / "order.json"
    schema_file.write_text(
        json.dumps(
            {
                "title": "Order",
                "type": "object",
                "required": ["id", "qty", "status", "items"],
                "properties": {
                    "id": {"type": "string", "pattern": "^ord-[0-9]+$", "maxLength": 10},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 9},
                    "status": {"enum": ["open", "shipped"]},
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}},
                    },
                },
                "additionalProperties": False,
            }
        ),
        encoding="utf-8",
    )
    bad = '{"id": "x-1", "qty": 12, "status": "lost", "items": [{"name": "pen"}], "extra": 1}'
    good = '{"id": "ord-42", "qty": 3, "status": "open", "items": [{"sku": "P-1"}]}'
    fake = FakeOllama([final_text(bad), final_text(good), final_text('{"id": "ord-1"}')] + [final_text(bad)] * 3)
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        fixed = run_cli("run", "--no-save", "--schema", str(schema_file), "Order?", env=env)
        failed = run_cli("run", "--no-save", "--schema", str(schema_file), "Order again?", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout) == json.loads(good)
    feedback = fake.generate_requests[1]["prompt"]
    for violation in (
        "id: 'x-1' does not match '^ord-[0-9]+$'",
        "qty: 12 is greater than the maximum of 9",
        "status: 'lost' is not one of ['open', 'shipped']",
        "items.0: 'sku' is a required property",
        "Additional properties are not allowed ('extra' was unexpected)",
    ):
        assert violation in feedback, violation
    assert "must match /^ord-[0-9]+$/" in fake.generate_requests[0]["prompt"]  # the model reads every constraint
    assert failed.returncode == 1 and failed.stdout == ""
    (line,) = error_lines(failed.stderr)
    assert line.startswith("error: the final answer did not validate as order 3 times in a row: ")
    assert "qty: 12 is greater than the maximum of 9" in line and "status: 'lost' is not one of" in line
    assert "Answer again" not in line  # the violations, not the words meant for the model


def test_schema_file_that_is_no_json_schema_is_refused(tmp_path):
    schema_file = tmp_path / "broken.json"
    schema_file.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integr"}}}), encoding="utf-8")
    done = run_cli("run", "--no-save", "--schema", str(schema_file), "x", env=cli_env(tmp_path, "http://127.0.0.1:9"))
    assert done.returncode == 1
    assert error_lines(done.stderr)[0].startswith(
        f"error: --schema {schema_file}: not a valid JSON Schema (properties/n/type"
    )


def test_habits_from_llm_a_bare_prompt_sessions_json_and_unwrapped_pipes(tmp_path):
    """`oss-agent "prompt"` answers it; `sessions --json` is one object a line; piped output is never wrapped."""
    long_question = "Which of these rivers is the longest one that flows through more than five countries in Europe?"
    fake = FakeOllama([final_text("The Danube.\n\n- it flows through ten countries, more than any other river")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url)
        env.pop("COLUMNS")
        answered = run_cli("--no-save", "-m", "gpt-oss:20b", "Why is the sky blue?", env=env)  # flags, then the prompt
        fake.add(final_text("Rayleigh."))
        saved = run_cli(long_question, env=env)
    assert answered.returncode == 0 and answered.stdout.startswith("The Danube."), answered.stderr
    assert saved.returncode == 0 and saved.stdout.startswith("Rayleigh."), saved.stderr
    assert "Why is the sky blue?" in fake.generate_requests[0]["prompt"]
    listed = run_cli("sessions", "--json", env=env)
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["title"].endswith("…") and long_question.startswith(row["title"][:-1])  # titles are kept short
    assert (row["turns"], row["model"], row["backend"], row["rating"]) == (1, "gpt-oss:20b", "ollama", None)
    assert row["updated_at"].endswith("+00:00")
    assert run_cli("sessions", "list", "--json", env=env).stdout == listed.stdout
    table = run_cli("sessions", env=env).stdout.splitlines()
    assert len(table) == 2 and table[1].rstrip().endswith(row["title"])  # one line per session, however long


def test_errors_name_the_cli_options(tmp_path):
    fake = FakeOllama([Completion("<|channel|>analysis<|message|>" + "long " * 30, done_reason="length")] * 3)
    with serve(fake) as url:
        done = run_cli("run", "--no-save", "-o", "max_tokens", "40", "Think hard", env=cli_env(tmp_path, url))
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert "raise max_tokens (-o max_tokens N)" in line and "max_completion_tokens" not in line
