"""Stateful execution, output capture and files in the Docker sandbox (real Docker)."""

from __future__ import annotations

import pytest
from sandbox_fixtures import docker_client, make_sandbox, sandbox, sandbox_image, shared_sandbox  # noqa: F401

pytestmark = pytest.mark.docker


def test_state_persists_across_calls(sandbox):
    assert sandbox.run("x = 20\nimport math").ok
    result = sandbox.run("y = x * 2 + 2\nmath.sqrt(y * y)")
    assert result.result == "42.0"
    assert sandbox.run("_").result == "42.0"  # the last value is kept in `_`


def test_last_expression_is_displayed_like_jupyter(shared_sandbox):
    assert shared_sandbox.run("1 + 1").result == "2"
    assert shared_sandbox.run("'a' * 3").result == "'a' * 3".replace("'a' * 3", "'aaa'")
    assert shared_sandbox.run("None").result is None
    assert shared_sandbox.run("1 + 1;").result is None  # a trailing semicolon hides it
    assert shared_sandbox.run("z = 5").result is None


def test_stdout_and_stderr(shared_sandbox):
    result = shared_sandbox.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n7")
    assert (result.stdout, result.stderr, result.result) == ("out\n", "err\n", "7")
    assert result.error is None and not result.truncated and result.duration_s < 5


def test_output_of_subprocesses_and_c_level_writes_is_captured(shared_sandbox):
    code = "import os, subprocess, sys\nos.write(1, b'raw\\n')\nsubprocess.run([sys.executable, '-c', 'print(3)'])"
    assert shared_sandbox.run(code).stdout == "raw\n3\n"


def test_exception_traceback_shows_only_user_frames(shared_sandbox):
    result = shared_sandbox.run("def f():\n    return 1 / 0\n\nf()")
    assert result.error is not None and not result.ok
    assert result.error.type == "ZeroDivisionError"
    assert result.error.message == "division by zero"
    tb = result.error.traceback
    assert tb.startswith("Traceback (most recent call last):")
    assert "line 4, in <module>" in tb and "return 1 / 0" in tb
    assert "repl_server" not in tb and "exec(" not in tb and "<string>" not in tb


def test_exception_keeps_state_and_partial_output(shared_sandbox):
    result = shared_sandbox.run("kept = 'yes'\nprint('before')\nraise ValueError('boom')")
    assert result.stdout == "before\n" and result.error.type == "ValueError"
    assert shared_sandbox.run("kept").result == "'yes'"


def test_syntax_error_is_reported(shared_sandbox):
    result = shared_sandbox.run("def broken(:\n    pass")
    assert result.error.type == "SyntaxError"
    assert "SyntaxError" in result.error.traceback


def test_system_exit_does_not_kill_the_interpreter(shared_sandbox):
    result = shared_sandbox.run("alive = 1\nraise SystemExit(3)")
    assert result.error.type == "SystemExit" and not result.restarted
    assert shared_sandbox.run("alive").result == "1"


def test_invalid_utf8_output_is_replaced(shared_sandbox):
    result = shared_sandbox.run("import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')")
    assert result.stdout.startswith("ok ") and result.stdout.endswith(" end\n")


def test_kept_background_thread_output_arrives_with_a_later_cell(make_sandbox):
    box = make_sandbox(kill_strays=False)
    code = (
        "import threading\ngo, done = threading.Event(), threading.Event()\n"
        "def later():\n    go.wait(5)\n    print('from thread', flush=True)\n    done.set()\n"
        "threading.Thread(target=later).start()"
    )
    assert box.run(code).stdout == ""
    second = box.run("go.set()")
    third = box.run("done.wait(5)")
    assert third.result == "True"
    seen = second.stdout + second.background + third.stdout + third.background
    assert seen.count("from thread") == 1


@pytest.mark.security
def test_background_processes_are_stopped_after_each_cell(sandbox):
    result = sandbox.run("import subprocess\np = subprocess.Popen(['python3', '-c', 'import time; time.sleep(60)'])")
    assert result.notice and "Background processes" in result.notice
    live = "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit() and ') Z' not in open(f'/proc/{p}/stat').read())"
    assert sandbox.run(live).result == f"[1, {sandbox.run('os.getpid()').result}]"


def test_background_processes_can_be_kept(make_sandbox):
    box = make_sandbox(kill_strays=False)
    box.run("import subprocess\np = subprocess.Popen(['python3', '-c', 'import time; time.sleep(60)'])")
    assert box.run("p.poll()").result is None  # still running
    box.run("p.kill(); p.wait()")


def test_mnt_data_persists_and_transfers_files(sandbox, tmp_path):
    local = tmp_path / "input.csv"
    local.write_text("a,b\n1,2\n")
    assert sandbox.upload(local) == "/mnt/data/input.csv"
    code = (
        "rows = open('/mnt/data/input.csv').read().splitlines()\nopen('/mnt/data/out.txt', 'w').write(str(len(rows)))"
    )
    assert sandbox.run(code).ok
    assert sandbox.run("import os\nsorted(os.listdir('/mnt/data'))").result == "['input.csv', 'out.txt']"
    assert sandbox.read_file("out.txt") == b"2"
    target = sandbox.download("/mnt/data/out.txt", tmp_path)
    assert target == tmp_path / "out.txt" and target.read_text() == "2"
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("missing.txt")


@pytest.mark.security
def test_download_refuses_paths_outside_mnt_data(sandbox):
    from agent.errors import SandboxError

    for name in ("/etc/passwd", "../etc/passwd", "a/../../etc/passwd"):
        with pytest.raises(SandboxError):
            sandbox.read_file(name)
    sandbox.run("import os\nos.symlink('/etc/passwd', '/mnt/data/link')")
    with pytest.raises(SandboxError, match="symbolic link"):
        sandbox.read_file("link")


def test_files_survive_an_interpreter_restart(make_sandbox):
    box = make_sandbox(timeout=1, interrupt_grace=0.5)
    box.run("open('/mnt/data/keep.txt', 'w').write('still here')\nv = 1")
    assert box.run("sum(range(10**12))").restarted
    assert box.run("open('/mnt/data/keep.txt').read()").result == "'still here'"


@pytest.mark.security
def test_concurrent_sandboxes_are_isolated(make_sandbox):
    first, second = make_sandbox(), make_sandbox()
    first.run("secret = 1\nopen('/mnt/data/f', 'w').write('1')")
    assert second.run("secret").error.type == "NameError"
    assert second.run("import os\nos.listdir('/mnt/data')").result == "[]"
    assert first.container_id != second.container_id and first.volume_name != second.volume_name


def test_close_removes_container_and_volume(make_sandbox, docker_client):
    import docker

    box = make_sandbox().start()
    container, volume = box.container_id, box.volume_name
    box.close()
    box.close()  # idempotent
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(container)
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_volume(volume)


def test_context_manager_removes_everything(sandbox_image, docker_client):
    import docker

    from sandbox import DockerSandbox

    with DockerSandbox(sandbox_image) as box:
        assert box.run("2 ** 10").result == "1024"
        container, volume = box.container_id, box.volume_name
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(container)
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_volume(volume)


def test_orphans_of_dead_processes_are_swept_on_start(sandbox_image, docker_client):
    import docker

    from sandbox import DockerSandbox
    from sandbox.docker_client import LABEL_PID, labels

    dead = {**labels("orphan"), LABEL_PID: "4194305"}  # above any pid_max: no such process
    container = docker_client.api.create_container(sandbox_image, ["python3"], labels=dead)["Id"]
    volume = docker_client.api.create_volume("oss-agent-data-orphan", labels=dead)["Name"]
    alive = docker_client.api.create_volume("oss-agent-data-alive", labels=labels("alive"))["Name"]
    try:
        with DockerSandbox(sandbox_image) as box:
            box.start()
            with pytest.raises(docker.errors.NotFound):
                docker_client.api.inspect_container(container)
            with pytest.raises(docker.errors.NotFound):
                docker_client.api.inspect_volume(volume)
            docker_client.api.inspect_volume(alive)  # its owner (this process) lives
    finally:
        docker_client.api.remove_volume(alive)
        for remove, name in (
            (docker_client.api.remove_container, container),
            (docker_client.api.remove_volume, volume),
        ):
            try:
                remove(name, force=True)
            except docker.errors.NotFound:
                pass
