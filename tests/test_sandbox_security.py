"""Each hardening default, checked from outside (inspect) and inside (attacks), real Docker."""

from __future__ import annotations

import pytest
from sandbox_fixtures import docker_client, make_sandbox, sandbox_image, shared_sandbox  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.security]


def _host_config(client, box):
    return client.api.inspect_container(box.container_id)["HostConfig"]


def _ok(box, code):
    result = box.run(code)
    assert result.error is None, result.error
    return result.result


def test_container_settings(shared_sandbox, docker_client):
    info = docker_client.api.inspect_container(shared_sandbox.container_id)
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert any(opt.startswith("seccomp=") and "ptrace" in opt for opt in host["SecurityOpt"])
    assert host["Memory"] == 512 * 1024**2 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 128
    assert not host["Init"]  # the REPL's supervisor is PID 1 itself
    assert host["IpcMode"] == "private"
    assert "noexec" in host["Tmpfs"]["/tmp"]
    assert {u["Name"]: u["Hard"] for u in host["Ulimits"]} == {"fsize": 16 * 1024**2, "nofile": 256}
    assert info["Config"]["User"] == "65534:65534"
    assert info["Config"]["Labels"]["oss-agent.sandbox"] == "1"
    assert not info["NetworkSettings"]["Ports"]


def test_effective_limits_inside(shared_sandbox):
    code = (
        "import os\n"
        "def first(*paths):\n"
        "    for p in paths:\n"
        "        if os.path.exists(p):\n"
        "            return open(p).read().split()[0]\n"
        "(first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'),\n"
        " first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'))"
    )
    assert _ok(shared_sandbox, code) == f"('{512 * 1024**2}', '128')"
    assert _ok(shared_sandbox, "import resource\nresource.getrlimit(resource.RLIMIT_NOFILE)") == "(256, 256)"


def test_network_is_blocked(shared_sandbox):
    connect = shared_sandbox.run("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)")
    assert connect.error is not None and connect.error.type in ("OSError", "TimeoutError")
    assert "unreachable" in connect.error.message.lower()
    dns = shared_sandbox.run("import socket\nsocket.getaddrinfo('example.com', 443)")
    assert dns.error is not None and dns.error.type == "gaierror"
    assert _ok(shared_sandbox, "import os\nos.listdir('/sys/class/net')") == "['lo']"


def test_writes_outside_mnt_data_and_tmp_fail(shared_sandbox):
    for path in ("/evil", "/usr/evil", "/mnt/evil", "/etc/evil", "/etc/passwd", "/usr/bin/python3"):
        result = shared_sandbox.run(f"open({path!r}, 'a')")
        assert result.error is not None, path
        assert "Read-only file system" in result.error.message or "Permission denied" in result.error.message
    assert "Read-only file system" in shared_sandbox.run("open('/usr/evil', 'w')").error.message
    assert _ok(shared_sandbox, "open('/tmp/ok', 'w').write('x')") == "1"
    assert _ok(shared_sandbox, "open('/mnt/data/ok', 'w').write('x')") == "1"


def test_tmp_is_noexec(shared_sandbox):
    code = (
        "import os, shutil, subprocess, sys\n"
        "shutil.copy(os.path.realpath(sys.executable), '/tmp/py')\nos.chmod('/tmp/py', 0o755)\n"
        "subprocess.run(['/tmp/py', '-c', 'pass'])"
    )
    result = shared_sandbox.run(code)
    assert result.error is not None and result.error.type == "PermissionError"
    shared_sandbox.run("import os\nos.remove('/tmp/py')")


def test_runs_as_non_root_without_privileges(shared_sandbox):
    assert _ok(shared_sandbox, "import os\n(os.getuid(), os.geteuid(), os.getgid())") == "(65534, 65534, 65534)"
    status = _ok(
        shared_sandbox, "dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)"
    )
    status = eval(status)  # noqa: S307 - a dict repr produced by the test itself
    for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, cap
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    setuid = shared_sandbox.run("import os\nos.setuid(0)")
    assert setuid.error is not None and setuid.error.type == "PermissionError"


def test_seccomp_denies_ptrace_namespaces_and_mount(shared_sandbox):
    code = (
        "import ctypes, ctypes.util, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(f, *a):\n"
        "    r = f(*a)\n"
        "    return r, ctypes.get_errno()\n"
        "(call(libc.ptrace, 16, 1, 0, 0),"  # PTRACE_ATTACH to docker-init
        " call(libc.unshare, 0x10000000),"  # CLONE_NEWUSER
        " call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None))"
    )
    assert _ok(shared_sandbox, code) == "((-1, 1), (-1, 1), (-1, 1))"
    # threads and subprocesses still work under the profile (clone3 falls back to clone)
    code = (
        "import threading, subprocess\nt = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "subprocess.run(['python3', '-c', 'print(1)'], capture_output=True).stdout"
    )
    assert _ok(shared_sandbox, code) == "b'1\\n'"


def test_file_size_limit(make_sandbox):
    box = make_sandbox(fsize="1m")
    result = box.run("open('/tmp/big', 'wb').write(b'x' * 2 * 1024 * 1024)")
    assert result.error is not None and "File too large" in result.error.message
    full = box.run("open('/mnt/data/big', 'wb').write(b'x' * 900 * 1024)")
    assert full.ok


def test_tmp_and_data_are_size_limited(make_sandbox):
    box = make_sandbox(tmp_size="2m", data_size="2m", fsize=None)
    for path in ("/tmp/fill", "/mnt/data/fill"):
        result = box.run(f"open({path!r}, 'wb').write(b'x' * 3 * 1024 * 1024)")
        assert result.error is not None and "No space left" in result.error.message, path


def test_fork_bomb_is_contained(make_sandbox):
    box = make_sandbox(pids_limit=32)
    result = box.run("import os\nwhile True:\n    os.fork()")
    assert result.error is not None and result.error.type == "BlockingIOError"
    assert not result.restarted
    live = "import os\nlen([p for p in os.listdir('/proc') if p.isdigit() and ') Z' not in open(f'/proc/{p}/stat').read()])"
    assert _ok(box, live) == "2"  # docker-init and the interpreter
    assert _ok(box, "1 + 1") == "2"


def test_thread_bomb_is_contained(make_sandbox):
    box = make_sandbox(pids_limit=32)
    code = "import threading\nev = threading.Event()\nwhile True:\n    threading.Thread(target=ev.wait).start()"
    result = box.run(code)
    assert result.error is not None and result.error.type == "RuntimeError"
    assert _ok(box, "ev.set()\n'done'") == "'done'"


def test_each_hardening_option_can_be_loosened(make_sandbox, docker_client):
    box = make_sandbox(
        network=True,
        read_only=False,
        tmp_exec=True,
        user="0:0",
        cap_add=("CHOWN",),
        no_new_privileges=False,
        memory="256m",
        memory_swap="512m",
        cpus=None,
        pids_limit=None,
        fsize=None,
        nofile=None,
        ipc_mode="shareable",
        seccomp="default",
    ).start()
    info = docker_client.api.inspect_container(box.container_id)
    host = info["HostConfig"]
    assert host["NetworkMode"] in ("default", "bridge")
    assert host["ReadonlyRootfs"] is False and "noexec" not in host["Tmpfs"]["/tmp"]
    assert info["Config"]["User"] == "0:0" and host["CapAdd"] == ["CHOWN"]
    assert host["SecurityOpt"] in (None, [])
    assert (host["Memory"], host["MemorySwap"]) == (256 * 1024**2, 512 * 1024**2)
    assert host["NanoCpus"] == 0 and host["PidsLimit"] in (None, 0, -1) and not host["Ulimits"]
    assert host["IpcMode"] == "shareable"
    assert _ok(box, "import os\nos.getuid()") == "0"
