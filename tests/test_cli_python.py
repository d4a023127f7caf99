"""`oss-agent chat -t python`: approval before model code runs, `/upload` into the real sandbox."""

from __future__ import annotations

import pytest
from cli_helpers import cli_env, quit_chat, run_cli, say, serve, spawn_chat
from fake_ollama import FakeOllama, final_text
from sandbox_fixtures import docker_client, sandbox_image  # noqa: F401  (fixtures)


def python_call(code: str, analysis: str) -> str:
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant"
        f"<|channel|>analysis to=python code<|message|>{code}"
    )


@pytest.mark.docker
def test_upload_then_approved_python_call(tmp_path, sandbox_image):  # noqa: F811
    data = tmp_path / "numbers.csv"
    data.write_text("n\n3\n4\n5\n", encoding="utf-8")
    code = "rows = open('/mnt/data/numbers.csv').read().split()[1:]\\nsum(int(r) for r in rows)"
    fake = FakeOllama(
        [
            python_call(code.replace("\\n", "\n"), "Sum the file."),
            final_text("The numbers add up to **12**.", "Tool said 12."),
            python_call("rows", "Check the variable."),
            final_text("Not run.", "User said no."),
        ]
    )
    with serve(fake) as url:
        env = cli_env(tmp_path, url, OSS_AGENT_SANDBOX_IMAGE=sandbox_image)
        child = spawn_chat("-t", "python", env=env, timeout=90)
        say(child, f"/upload {data}")
        child.expect_exact("uploaded to /mnt/data/numbers.csv")
        say(child, "Add up the numbers in my file.")
        child.expect_exact("[a]lways")  # the CLI asks before running model code
        child.send("y\r")
        child.expect_exact("12")
        child.expect_exact("add up to")
        say(child, "Show rows.")
        child.expect_exact("[a]lways")
        child.send("n\r")
        child.expect_exact("Not run.")
        quit_chat(child)
    prompts = [r["prompt"] for r in fake.generate_requests]
    assert "[I uploaded numbers.csv to /mnt/data/numbers.csv]" in prompts[0]
    assert "<|start|>python to=assistant<|channel|>analysis<|message|>12<|end|>" in prompts[1]
    assert "the user declined to run python" in prompts[3]


@pytest.mark.docker
def test_run_attach_puts_the_file_into_the_sandbox(tmp_path, sandbox_image):  # noqa: F811
    data = tmp_path / "numbers.csv"
    data.write_text("n\n3\n4\n5\n", encoding="utf-8")
    code = "rows = open('/mnt/data/numbers.csv').read().split()[1:]\nsum(int(r) for r in rows)"
    fake = FakeOllama([python_call(code, "Sum the file."), final_text("They add up to 12.", "Tool said 12.")])
    with serve(fake) as url:
        env = cli_env(tmp_path, url, OSS_AGENT_SANDBOX_IMAGE=sandbox_image)
        done = run_cli("run", "-t", "python", "--yes", "-a", str(data), "Add up my numbers.", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "They add up to 12.\n"
    assert (
        "[I uploaded numbers.csv to /mnt/data/numbers.csv]\n\nAdd up my numbers." in fake.generate_requests[0]["prompt"]
    )
    assert "12" in fake.generate_requests[1]["prompt"]  # the cell read the uploaded file
