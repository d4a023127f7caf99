"""Attacks on the Python sandbox with the real Docker engine: from outside (containers removed
or killed during a cell), through file transfer, and from cell code (threads and processes that
outlive the cell, forged and broken protocol frames, /proc, memfd). Each asserts containment,
what the model or the caller sees, and that the next call works."""

from __future__ import annotations

import threading

import pytest
from sandbox_fixtures import SLOW_CELL, wait_for_file

from agent.errors import SandboxError
from tools.python import render

pytestmark = pytest.mark.docker


def during_a_cell(box, client, act):
    """Run SLOW_CELL, do ``act(container_id)`` while it runs; return what `run` returned or raised."""
    box.run("kept = 1")
    container = box.container_id
    outcome = {}

    def cell():
        try:
            outcome["result"] = box.run(SLOW_CELL)
        except SandboxError as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=cell)
    runner.start()
    wait_for_file(client, container, "/mnt/data/started")
    act(container)
    runner.join(60)
    assert not runner.is_alive()
    return outcome


# ---------------------------------------------------------------- from outside


@pytest.mark.parametrize("attempt", range(3))
def test_container_removed_during_a_cell(make_sandbox, docker_client, attempt):
    box = make_sandbox(timeout=60)
    before = box.restarts
    outcome = during_a_cell(box, docker_client, lambda c: docker_client.api.remove_container(c, force=True))
    error = outcome["error"]
    assert isinstance(error, SandboxError) and "removed from outside" in str(error)
    assert "files in /mnt/data were kept" in str(error) and "next call starts a fresh sandbox" in str(error)
    assert box.restarts == before + 1
    assert box.run("open('/mnt/data/started').read()").result == "'1'"  # kept, as it said
    assert box.run("kept").error.type == "NameError"


def test_container_and_keeper_removed_during_a_cell(make_sandbox, docker_client):
    box = make_sandbox(timeout=60)

    def remove_both(container):
        keeper = box._state["keeper"]
        for victim in (keeper, container):
            docker_client.api.remove_container(victim, force=True)

    error = during_a_cell(box, docker_client, remove_both)["error"]
    assert "files in /mnt/data were lost" in str(error)
    missing = box.run("open('/mnt/data/started').read()")
    assert missing.error.type == "FileNotFoundError"  # lost, as it said
    assert box.run("6 * 7").result == "42"


def test_container_killed_during_a_cell(make_sandbox, docker_client):
    box = make_sandbox(timeout=60)
    error = during_a_cell(box, docker_client, lambda c: docker_client.api.kill(c))["error"]
    assert isinstance(error, SandboxError) and "killed (SIGKILL)" in str(error)
    assert box.restarts == 1 and box.run("'again'").result == "'again'"


def test_keeper_killed_then_interpreter_restarted_says_files_were_lost(make_sandbox, docker_client):
    box = make_sandbox(timeout=60)
    box.run("open('/mnt/data/f', 'w').write('x')")
    docker_client.api.kill(box._state["keeper"])
    docker_client.api.kill(box.container_id)
    docker_client.api.wait(box.container_id, timeout=30)
    result = box.run("import os\nos.listdir('/mnt/data')")
    assert result.restarted and "files in /mnt/data were lost" in result.notice
    assert result.result == "[]"


# ---------------------------------------------------------------- file transfer


def test_read_file_does_not_follow_symlinked_folders(make_sandbox):
    box = make_sandbox()
    box.run(
        "import os\nos.symlink('/', '/mnt/data/sub')\nos.makedirs('/mnt/data/real')\n"
        "open('/mnt/data/real/ok.txt', 'w').write('fine')"
    )
    for name in ("sub/etc/passwd", "sub/etc/shadow", "/mnt/data/sub/etc/passwd", "sub"):
        with pytest.raises(SandboxError, match="symbolic link"):
            box.read_file(name)
    assert box.read_file("real/ok.txt") == b"fine"


def test_download_replaces_a_host_symlink_instead_of_writing_through_it(make_sandbox, tmp_path):
    box = make_sandbox()
    box.run("open('/mnt/data/out.txt', 'w').write('from the sandbox')")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out.txt").symlink_to(victim)
    target = box.download("out.txt", tmp_path)
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text() == "from the sandbox"
    explicit = tmp_path / "link2"
    explicit.symlink_to(victim)
    box.download("out.txt", explicit)
    assert victim.read_text() == "precious" and explicit.read_text() == "from the sandbox"


@pytest.mark.parametrize("name", ["a\0b.txt", "evil\n.txt", "dir/x.txt", "..", ".", "", "tab\there"])
def test_upload_names_are_used_as_given_or_refused(make_sandbox, tmp_path, name):
    box = make_sandbox()
    local = tmp_path / "data.txt"
    local.write_text("payload")
    with pytest.raises(SandboxError, match="invalid file name"):
        box.upload(local, name)
    if any(ord(c) < 32 for c in name):
        with pytest.raises(SandboxError, match="control characters"):
            box.read_file(name)
    assert box.upload(local, "naïve name (1).txt") == "/mnt/data/naïve name (1).txt"
    assert box.run("import os\nos.listdir('/mnt/data')").result == "['naïve name (1).txt']"


def test_upload_replaces_a_symlink_planted_in_mnt_data(make_sandbox, tmp_path):
    box = make_sandbox()
    box.run("import os\nos.symlink('/tmp/target', '/mnt/data/planted')")
    local = tmp_path / "planted"
    local.write_text("uploaded")
    box.upload(local)
    assert (
        box.run("import os\n(os.path.islink('/mnt/data/planted'), os.path.exists('/tmp/target'))").result
        == "(False, False)"
    )
    assert box.read_file("planted") == b"uploaded"


# ---------------------------------------------------------------- between cells


def test_threads_do_not_outlive_their_cell(make_sandbox):
    box = make_sandbox()
    started = box.run(
        "import threading, time\n"
        "def tick():\n    while True:\n        print('tick', flush=True)\n        time.sleep(0.01)\n"
        "threading.Thread(target=tick, daemon=True).start()"
    )
    assert started.ok and not started.notice
    later = [box.run("import threading\nthreading.active_count()") for _ in range(3)]
    assert all("tick" not in r.stdout + r.background for r in later)
    assert later[-1].result == "1"


def test_a_thread_that_refuses_to_stop_is_reported_to_the_model(make_sandbox):
    box = make_sandbox()
    code = (
        "import threading, time\nstop = threading.Event()\n"
        "def stubborn():\n    while not stop.is_set():\n        try:\n            time.sleep(0.01)\n"
        "        except BaseException:\n            pass\n"
        "threading.Thread(target=stubborn).start()"
    )
    result = box.run(code)
    assert result.notice and "1 thread started by this code is still running" in result.notice
    assert "still running" in render(result)
    again = box.run("'told once'")
    assert again.result == "'told once'" and not again.notice
    assert box.run("stop.set()\n'stopping'").result == "'stopping'"


def test_child_processes_do_not_outlive_their_cell(make_sandbox):
    box = make_sandbox()
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(600)\n    os._exit(0)\n"
        "os.wait()"
    )
    result = box.run(code)
    assert result.notice and "Background processes" in result.notice
    live = (
        "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit() "
        "and ') Z' not in open(f'/proc/{p}/stat').read())"
    )
    assert box.run(live).result == f"[1, {box.run('os.getpid()').result}]"


FIND_TOKEN = (
    "import sys, json, os, struct\n"
    "frame, token = sys._getframe(), None\n"
    "while frame is not None and token is None:\n"
    "    request = frame.f_locals.get('request')\n"
    "    token = request.get('token') if isinstance(request, dict) else None\n"
    "    frame = frame.f_back\n"
)


def test_a_result_forged_with_the_token_from_the_stack_reaches_the_host_only_as_content(make_sandbox):
    box = make_sandbox()
    code = FIND_TOKEN + (
        "body = json.dumps({'token': token, 'type': 'result', 'id': 'x', 'stdout': 'pwned', 'result': \"'forged'\"})\n"
        "for fd in map(int, os.listdir('/proc/self/fd')):\n"
        "    try:\n"
        "        if fd > 2 and os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):\n"
        "            os.write(fd, struct.pack('>I', len(body)) + body.encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "'genuine'"
    )
    first = box.run(code)
    assert "pwned" not in first.stdout + first.stderr + first.background
    assert first.result in ("'forged'", "'genuine'")
    second = box.run("'next'")  # the forger went on running: the Python process is replaced
    told = (second.notice or "") + (second.error.message if second.error else "")
    assert second.restarted and "sent a forged result and went on running" in told
    assert box.run("'after'").result == "'after'"


@pytest.mark.parametrize(
    "breakage",
    [
        "os.closerange(3, 1024)",
        (
            "null = os.open('/dev/null', os.O_WRONLY)\nfor fd in range(3, 64):\n    try:\n        os.fstat(fd)\n"
            "        os.dup2(null, fd)\n    except OSError:\n        pass"
        ),
    ],
    ids=["closed", "replaced"],
)
def test_a_broken_channel_is_noticed_long_before_the_timeout(make_sandbox, breakage):
    box = make_sandbox(timeout=120)
    box.run("kept = 1")
    result = box.run("import os, time\n" + breakage + "\ntime.sleep(120)")
    assert not result.timed_out and result.restarted
    assert result.error.type == "SandboxError" and "channel" in result.error.message
    assert "files in /mnt/data are kept" in result.error.message
    assert box.run("kept").error.type == "NameError" and box.run("1 + 1").result == "2"


def test_seventy_megabytes_of_code_are_refused_at_once(make_sandbox):
    box = make_sandbox(timeout=120)
    box.run("kept = 1")
    result = box.run("x = 1\n" + "#" * (70 * 1024 * 1024))
    assert result.error.type == "ValueError" and "at most 16m" in result.error.message and not result.timed_out
    assert box.run("kept").result == "1"


def test_init_memory_and_descriptors_are_not_readable(make_sandbox):
    box = make_sandbox()
    for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/maps"):
        result = box.run(f"open({path!r}, 'rb').read(16)")
        assert result.error is not None and result.error.type == "PermissionError", path
    listing = box.run("import os\nos.listdir('/proc/1/fd')")
    assert listing.error.type == "PermissionError"
    assert box.run("len(open('/proc/self/maps').read()) > 0").result == "True"


def test_memfd_exec_is_refused(make_sandbox):
    box = make_sandbox()
    result = box.run("import os\nos.memfd_create('payload')")
    assert result.error.type == "PermissionError"
    noexec = box.run(
        "import shutil, subprocess, sys\nshutil.copy(sys.executable, '/mnt/data/py')\n"
        "import os\nos.chmod('/mnt/data/py', 0o755)\nsubprocess.run(['/mnt/data/py', '-c', '1'])"
    )
    assert noexec.error.type == "PermissionError"
    assert box.run("'still fine'").result == "'still fine'"


def test_lone_surrogates_never_reach_the_model(make_sandbox):
    box = make_sandbox()
    result = box.run("raise ValueError(chr(0xd800))")
    assert result.error.type == "ValueError" and result.error.message == "\ufffd"
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in render(result))
    echoed = box.run("chr(0xdfff) + 'x'")
    assert echoed.result == "'\\udfff' + 'x'" or not any(0xD800 <= ord(c) <= 0xDFFF for c in echoed.result)
