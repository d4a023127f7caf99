"""Timeouts, crashes, floods, protocol abuse and an absent daemon (real Docker)."""

from __future__ import annotations

import resource
import socket
import threading
import time

import pytest
from sandbox_fixtures import docker_client, make_sandbox, sandbox_image  # noqa: F401

from agent.errors import SandboxError, SandboxUnavailableError
from sandbox import DockerSandbox

docker_test = pytest.mark.docker

# Writes raw bytes to every pipe the interpreter holds, which includes its protocol stream.
WRITE_TO_PIPES = (
    "import os\n"
    "for fd in map(int, os.listdir('/proc/self/fd')):\n"
    "    try:\n"
    "        if fd > 2 and os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):\n"
    "            os.write(fd, PAYLOAD)\n"
    "    except OSError:\n"
    "        pass\n"
)


@docker_test
@pytest.mark.security
def test_python_loop_is_interrupted_and_state_kept(make_sandbox):
    box = make_sandbox(timeout=1)
    box.run("kept = [1, 2, 3]")
    result = box.run("print('started')\nwhile True:\n    pass")
    assert result.timed_out and not result.restarted
    assert result.error.type == "TimeoutError" and "variables are preserved" in result.error.message
    assert result.stdout == "started\n"
    assert 0.9 < result.duration_s < 3
    assert box.run("kept").result == "[1, 2, 3]"


@docker_test
def test_per_call_timeout_overrides_the_default(make_sandbox):
    box = make_sandbox(timeout=30)
    result = box.run("import time\ntime.sleep(30)", timeout=0.5)
    assert result.timed_out and result.duration_s < 3


@docker_test
@pytest.mark.security
def test_c_level_loop_is_killed_and_restart_reported(make_sandbox):
    box = make_sandbox(timeout=1, interrupt_grace=0.5)
    box.run("kept = 1")
    started = time.monotonic()
    result = box.run("sum(range(10**13))")
    assert result.timed_out and result.restarted
    assert result.error.type == "TimeoutError" and "variables were lost" in result.error.message
    assert time.monotonic() - started < 6
    after = box.run("kept")
    assert after.error.type == "NameError" and not after.restarted
    assert box.run("1 + 1").result == "2"
    assert box.restarts == 1


@docker_test
@pytest.mark.security
def test_memory_bomb_is_contained_and_reported(make_sandbox):
    box = make_sandbox(memory="96m", tmp_size="8m", data_size="8m")
    box.run("kept = 1")
    result = box.run("x = bytearray(1024**3)")
    assert result.restarted and not result.timed_out
    assert result.error.type == "MemoryError"
    assert "out of memory" in result.error.message and "96m" in result.error.message
    assert box.run("'alive'").result == "'alive'"


@docker_test
@pytest.mark.security
def test_output_flood_is_truncated_and_host_memory_stays_flat(make_sandbox):
    box = make_sandbox(timeout=60)
    box.start()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = box.run(
        "import sys\nchunk = 'y' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.write(chunk)\nprint('END')"
    )
    elapsed = time.monotonic() - started
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.ok and result.truncated
    assert result.stdout.startswith("yyyy") and result.stdout.endswith("END\n")
    assert "bytes of output omitted" in result.stdout
    assert len(result.stdout) < 80 * 1024
    assert elapsed < 15
    assert grown_kib < 50 * 1024  # the host never held the 200 MB
    big = box.run("'z' * 10**7")
    assert big.truncated and len(big.result) < 80 * 1024


@docker_test
@pytest.mark.security
def test_interpreter_killed_from_outside_is_detected(make_sandbox, docker_client):
    box = make_sandbox()
    box.run("kept = 1")
    docker_client.api.kill(box.container_id)
    docker_client.api.wait(box.container_id, timeout=10)
    result = box.run("'fresh'")
    assert result.restarted and result.result == "'fresh'"
    assert "had stopped" in result.notice and "variables were lost" in result.notice
    assert box.run("kept").error.type == "NameError"


@docker_test
@pytest.mark.security
def test_container_removed_from_outside_is_detected(make_sandbox, docker_client):
    box = make_sandbox()
    box.run("kept = 1")
    docker_client.api.remove_container(box.container_id, force=True)
    result = box.run("'fresh'")
    assert result.restarted and result.result == "'fresh'"


@docker_test
@pytest.mark.security
def test_interpreter_exit_during_a_cell_is_reported(make_sandbox):
    box = make_sandbox()
    result = box.run("import os\nos._exit(3)")
    assert result.restarted and result.error.type == "ProcessDied"
    assert "exited with code 3" in result.error.message
    assert box.run("2 * 21").result == "42"


@docker_test
@pytest.mark.security
def test_oversized_length_prefix_cannot_exhaust_host_memory(make_sandbox):
    box = make_sandbox()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = box.run(
        "PAYLOAD = b'\\x7f\\xff\\xff\\xff' + b'x' * 65536\n" + WRITE_TO_PIPES + "import time\ntime.sleep(5)"
    )
    assert result.restarted and result.error.type == "SandboxError"
    assert "exceeds" in result.error.message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
    assert box.run("'recovered'").result == "'recovered'"


@docker_test
@pytest.mark.security
def test_forged_result_frame_is_rejected(make_sandbox):
    box = make_sandbox()
    forged = "import json, struct\nbody = json.dumps({'type': 'result', 'id': 'forged', 'stdout': 'pwned'}).encode()\n"
    result = box.run(
        forged + "PAYLOAD = struct.pack('>I', len(body)) + body\n" + WRITE_TO_PIPES + "import time\ntime.sleep(5)"
    )
    assert result.restarted and result.error.type == "SandboxError" and "pwned" not in result.stdout
    assert box.run("1").result == "1"


@docker_test
def test_close_during_a_running_cell_ends_it(make_sandbox, docker_client):
    box = make_sandbox(timeout=60)
    box.start()
    container = box.container_id
    results = []
    runner = threading.Thread(target=lambda: results.append(box.run("import time\ntime.sleep(60)")))
    runner.start()
    box.interrupt()  # may land before the cell starts: then close() must still end it
    box.close()
    runner.join(15)
    assert not runner.is_alive() and results
    with pytest.raises(SandboxError):
        box.run("1")
    import docker

    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(container)


@docker_test
def test_broken_interpreter_gives_a_clear_error(make_sandbox):
    box = make_sandbox(python="/nonexistent/python3")
    with pytest.raises(SandboxError, match="did not start|cannot create"):
        box.start()


@docker_test
def test_missing_image_without_pull_says_how_to_build_one(docker_client):
    box = DockerSandbox("oss-agent-no-such-image:never", pull=False)
    with pytest.raises(SandboxUnavailableError, match="python -m sandbox.image"):
        box.start()
    box.close()


@docker_test
def test_missing_image_that_cannot_be_pulled_says_how_to_build_one(docker_client):
    box = DockerSandbox("localhost:1/oss-agent-no-such-image:never")
    started = time.monotonic()
    with pytest.raises(SandboxUnavailableError, match="python -m sandbox.image"):
        box.start()
    assert time.monotonic() - started < 30
    box.close()


# ---------------------------------------------------------------- no daemon (no Docker needed)


def test_daemon_down_raises_unavailable_quickly(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    box = DockerSandbox("any-image")
    started = time.monotonic()
    with pytest.raises(SandboxUnavailableError, match="Docker is not available"):
        box.run("1")
    assert time.monotonic() - started < 5
    box.close()


def test_unresponsive_daemon_does_not_hang(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections but never answers
    try:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{listener.getsockname()[1]}")
        box = DockerSandbox("any-image", connect_timeout=1)
        started = time.monotonic()
        with pytest.raises(SandboxUnavailableError):
            box.start()
        assert time.monotonic() - started < 5
        box.close()
    finally:
        listener.close()
