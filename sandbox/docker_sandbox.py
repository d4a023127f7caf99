"""A stateful, locked-down Python interpreter in one long-lived Docker container."""

from __future__ import annotations

import io
import os
import secrets
import socket
import tarfile
import threading
import time
import weakref
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors

from agent.errors import SandboxError, SandboxUnavailableError

from .config import SandboxConfig, parse_size
from .docker_client import CONNECTION_ERRORS, connect, labels, sweep_orphans
from .protocol import ChannelClosed, FrameReader, ProtocolError, encode
from .pull import ensure_image
from .result import ExecError, ExecResult

DEFAULT_IMAGE = "python:3.12-slim"
IMAGE_ENV = "OSS_AGENT_SANDBOX_IMAGE"
DATA_DIR = "/mnt/data"
LOST = "the Python process was restarted and all variables were lost (files in /mnt/data are kept)"


@lru_cache(maxsize=1)
def server_source() -> str:
    """Source of the in-container REPL, passed to ``python3 -c``."""
    return resources.files(__package__).joinpath("repl_server.py").read_text(encoding="utf-8")


def _cleanup(state: dict[str, Any]) -> None:
    """Remove what a sandbox left behind (also run at interpreter exit)."""
    client = state.get("client")
    if client is None:
        return
    for key, remove in (("container", lambda i: client.api.remove_container(i, force=True)),
                        ("keeper", lambda i: client.api.remove_container(i, force=True)),
                        ("volume", lambda n: client.api.remove_volume(n, force=True))):
        if state.get(key):
            try:
                remove(state[key])
            except Exception:
                pass
            state[key] = None


class DockerSandbox:
    """A Python interpreter whose state persists across `run` calls.

    ``image`` defaults to ``$OSS_AGENT_SANDBOX_IMAGE``, else ``python:3.12-slim``.
    ``timeout`` is the default per-cell limit in seconds. Other keyword options
    (network, memory, cpus, user, seccomp, ...) are described in
    `sandbox.config`; every default is the locked-down one.

    The container is created on `start` (or the first `run`) and removed by
    `close`, together with the /mnt/data volume.
    """

    def __init__(self, image: str | None = None, timeout: float = 120, *, client: Any = None, **options: Any):
        self.image = image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
        self.timeout = float(timeout)
        self.config = SandboxConfig.from_options(options)
        self.session = secrets.token_hex(6)
        self.restarts = 0
        self._lock = threading.RLock()
        self._state: dict[str, Any] = {"client": client, "container": None, "keeper": None, "volume": None}
        self._own_client = client is None
        self._sock: Any = None  # keeps docker-py's socket wrapper (and its response) alive
        self._reader: FrameReader | None = None
        self._closed = False
        self._swept = False
        self._finalizer = weakref.finalize(self, _cleanup, self._state)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> DockerSandbox:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def container_id(self) -> str | None:
        return self._state["container"]

    @property
    def volume_name(self) -> str | None:
        return self._state["volume"]

    def start(self) -> DockerSandbox:
        """Create and start the container if it is not running yet."""
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            if self._state["container"] is None:
                self._guard(self._start_container)
        return self

    def close(self) -> None:
        """Remove the container and the /mnt/data volume. Safe to call twice."""
        if not self._lock.acquire(timeout=0.2):
            self._closed = True
            self.kill()  # a running cell holds the lock: end it
            self._lock.acquire()
        try:
            self._closed = True
            self._drop_socket(shutdown=True)
            _cleanup(self._state)
            client = self._state.get("client")
            if client is not None and self._own_client:
                try:
                    client.close()
                except Exception:
                    pass
            self._state["client"] = None
            self._finalizer.detach()
        finally:
            self._lock.release()

    def interrupt(self) -> None:
        """Send SIGINT to the running cell (thread-safe; the cell gets KeyboardInterrupt)."""
        self._signal("SIGINT")

    def kill(self) -> None:
        """Kill the interpreter at once (thread-safe); the next `run` starts a fresh one."""
        self._signal("SIGKILL")

    def _signal(self, sig: str) -> None:
        client, container = self._state.get("client"), self._state.get("container")
        if client is None or container is None:
            return
        try:
            client.api.kill(container, signal=sig)
        except (docker.errors.APIError, *CONNECTION_ERRORS):
            pass

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Call ``fn``, turning a vanished daemon into `SandboxUnavailableError`."""
        try:
            return fn(*args)
        except CONNECTION_ERRORS as exc:
            raise SandboxUnavailableError(f"lost the connection to Docker: {exc}") from None

    def _client(self) -> docker.DockerClient:
        if self._state["client"] is None or not self._swept:
            self._state["client"] = connect(self.config.connect_timeout, self.config.docker_timeout,
                                            self._state["client"])
        if not self._swept:
            sweep_orphans(self._state["client"])
            self._swept = True
        return self._state["client"]

    def _create(self, command: list[str], name: str, **overrides: Any) -> str:
        api = self._state["client"].api
        options = {**self.config.container_options(), **overrides}
        host_config = api.create_host_config(
            binds={self._state["volume"]: {"bind": DATA_DIR, "mode": "rw,nocopy"}},
            **{k: v for k, v in options.items() if k not in ("user", "working_dir", "environment")},
        )
        try:
            return api.create_container(
                self.image, command, user=options["user"], working_dir=options["working_dir"],
                environment=options["environment"], stdin_open=True, tty=False, name=name,
                labels=labels(self.session, self.config.labels), host_config=host_config,
            )["Id"]
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot create the sandbox container: {exc.explanation or exc}") from None

    def _ensure_keeper(self) -> None:
        """Start the keeper that holds /mnt/data's tmpfs volume mounted.

        Docker unmounts a tmpfs volume (losing its files) when no running
        container uses it; the keeper, an idle process in a tiny locked-down
        container, lets files outlive interpreter restarts.
        """
        api = self._state["client"].api
        keeper = self._state["keeper"]
        if keeper is not None:
            try:
                if api.inspect_container(keeper)["State"].get("Running"):
                    return
            except docker.errors.NotFound:
                pass
            self._state["keeper"] = None
            try:
                api.remove_container(keeper, force=True)
            except docker.errors.NotFound:
                pass
        keeper = self._create(
            [self.config.python, "-I", "-S", "-c", "import signal\nwhile True: signal.pause()"],
            f"oss-agent-keeper-{self.session}-{self.restarts}",
            mem_limit=32 * 1024**2, memswap_limit=32 * 1024**2, pids_limit=8, nano_cpus=100_000_000,
        )
        self._state["keeper"] = keeper
        api.start(keeper)

    def _start_container(self) -> None:
        client = self._client()
        ensure_image(client, self.image, pull=self.config.pull)
        api = client.api
        if self._state["volume"] is None:
            name = f"oss-agent-data-{self.session}"
            api.create_volume(name, driver="local", driver_opts=self.config.volume_options(),
                              labels=labels(self.session, self.config.labels))
            self._state["volume"] = name
        keeper = _Background(self._ensure_keeper)  # starts alongside the interpreter's container
        try:
            self._start_interpreter(api)
        finally:
            keeper.join()

    def _start_interpreter(self, api: Any) -> None:
        command = [self.config.python, "-u", "-c", server_source(), _json(self.config.server_options())]
        container = self._create(command, f"oss-agent-sandbox-{self.session}-{self.restarts}")
        self._state["container"] = container
        try:
            self._sock = api.attach_socket(container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            raw = getattr(self._sock, "_sock", self._sock)
            self._reader = FrameReader(raw, self.config.max_frame)
            api.start(container)
            ready = self._reader.read_message(time.monotonic() + self.config.startup_timeout)
            if ready.get("type") != "ready":
                raise ProtocolError("no ready message")
        except (ChannelClosed, ProtocolError, TimeoutError, docker.errors.APIError) as exc:
            detail = self._reader.stderr_tail.decode(errors="replace").strip()[-600:] if self._reader else ""
            self._discard_container()
            raise SandboxError(f"the sandbox interpreter did not start ({exc}). {detail}".strip()) from None

    def _drop_socket(self, shutdown: bool = False) -> None:
        if self._sock is not None:
            raw = getattr(self._sock, "_sock", self._sock)
            try:
                if shutdown:
                    raw.shutdown(socket.SHUT_WR)
                raw.close()
            except OSError:
                pass
            try:
                self._sock.close()
            except Exception:
                pass
        self._sock = self._reader = None

    def _discard_container(self) -> None:
        self._drop_socket()
        container, self._state["container"] = self._state["container"], None
        if container is not None:
            try:
                self._state["client"].api.remove_container(container, force=True)
            except docker.errors.NotFound:
                pass

    def _death_reason(self) -> str:
        """Why the interpreter's stream ended, from the container's state."""
        api = self._state["client"].api
        container = self._state["container"]
        try:
            api.wait(container, timeout=5)
        except docker.errors.NotFound:
            return "its container was removed"
        except CONNECTION_ERRORS:
            pass  # still running after 5 s: it stopped answering
        try:
            state = api.inspect_container(container)["State"]
        except docker.errors.NotFound:
            return "its container was removed"
        if state.get("OOMKilled"):
            limit = self.config.memory
            return f"it ran out of memory (limit {limit})" if limit else "it ran out of memory"
        if state.get("Running"):
            return "it stopped answering"
        code = state.get("ExitCode")
        if code == 137:
            return "it was killed (SIGKILL)"
        return f"it exited with code {code}"

    # ------------------------------------------------------------ running code

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell; variables, imports and files persist between calls.

        User-code errors, timeouts, out-of-memory and crashes come back in the
        result. Raises `SandboxUnavailableError` when Docker cannot be reached
        and `SandboxError` when the sandbox cannot be (re)started.
        """
        limit = self.timeout if timeout is None else float(timeout)
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            return self._guard(self._run, code, limit)

    def _run(self, code: str, limit: float) -> ExecResult:
        notice = None
        if self._state["container"] is not None and self._reader is not None and self._reader.closed():
            reason = self._death_reason()
            self._discard_container()
            self.restarts += 1
            notice = (f"The previous Python process had stopped ({reason}); this code ran in a fresh one "
                      "and earlier variables were lost (files in /mnt/data are kept).")
        if self._state["container"] is None:
            self._start_container()
        started = time.monotonic()
        cell_id = secrets.token_hex(8)
        try:
            self._sock_send(encode({"type": "exec", "id": cell_id, "code": code}))
            reply = self._reader.read_message(started + limit)
        except TimeoutError:
            return self._after_timeout(cell_id, limit, started)
        except ChannelClosed:
            return self._after_crash(started, f"The Python process died while running this code: {{}}; {LOST}.",
                                     "ProcessDied")
        except ProtocolError as exc:
            return self._after_crash(started, f"The sandbox broke the protocol ({exc}); {LOST}.",
                                     "SandboxError", kill=True)
        return self._reply_result(reply, cell_id, started, notice=notice, restarted=notice is not None)

    def _sock_send(self, data: bytes) -> None:
        raw = getattr(self._sock, "_sock", self._sock)
        raw.settimeout(10)
        try:
            raw.sendall(data)
        except TimeoutError:
            raise ProtocolError("the interpreter does not read its input") from None
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None

    def _reply_result(self, reply: dict[str, Any], cell_id: str, started: float, **extra: Any) -> ExecResult:
        if reply.get("type") != "result" or reply.get("id") != cell_id:
            return self._after_crash(started, f"The sandbox broke the protocol (unexpected message); {LOST}.",
                                     "SandboxError", kill=True)
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                error = {"ename": "Error", "evalue": str(error)}
            error = ExecError(str(error.get("ename", "Error")), str(error.get("evalue", "")),
                              str(error.get("traceback", "")))
        notice = extra.pop("notice", None)
        if reply.get("strays"):
            notice = ((notice + " ") if notice else "") + "Background processes started by this code were stopped."
        result = reply.get("result")
        return ExecResult(
            stdout=_text(reply.get("stdout")), stderr=_text(reply.get("stderr")),
            result=None if result is None else _text(result), error=error,
            duration_s=time.monotonic() - started, truncated=bool(reply.get("truncated")),
            notice=notice, **extra,
        )

    def _after_timeout(self, cell_id: str, limit: float, started: float) -> ExecResult:
        api = self._state["client"].api
        try:
            api.kill(self._state["container"], signal="SIGINT")
            reply = self._reader.read_message(time.monotonic() + self.config.interrupt_grace)
        except (TimeoutError, ProtocolError, docker.errors.APIError):
            reply = None
        except ChannelClosed:
            reply = None
        if reply is not None and reply.get("type") == "result" and reply.get("id") == cell_id:
            result = self._reply_result(reply, cell_id, started)
            if result.error is None or result.error.type != "KeyboardInterrupt":
                return result  # it finished just as the deadline passed
            error = ExecError("TimeoutError", f"execution exceeded {limit:g} s and was interrupted; "
                                              "variables are preserved")
            return ExecResult(stdout=result.stdout, stderr=result.stderr, error=error, timed_out=True,
                              duration_s=result.duration_s, truncated=result.truncated, notice=result.notice)
        message = f"execution exceeded {limit:g} s and did not stop when interrupted; {LOST}"
        self._restart_after_failure(kill=True)
        return ExecResult(error=ExecError("TimeoutError", message), timed_out=True, restarted=True,
                          duration_s=time.monotonic() - started)

    def _after_crash(self, started: float, template: str, kind: str, kill: bool = False) -> ExecResult:
        reason = None if kill else self._death_reason()
        if reason and "out of memory" in reason:
            kind = "MemoryError"
        message = template.format(reason) if "{}" in template else template
        self._restart_after_failure(kill=kill)
        return ExecResult(error=ExecError(kind, message.rstrip(".")), restarted=True,
                          duration_s=time.monotonic() - started)

    def _restart_after_failure(self, kill: bool) -> None:
        """Drop the broken container; the next `run` creates a fresh one."""
        if kill:
            self._signal("SIGKILL")
        self._discard_container()
        self.restarts += 1

    # ------------------------------------------------------------ files

    def upload(self, local_path: str | os.PathLike[str], name: str | None = None) -> str:
        """Copy a local file into /mnt/data; returns its path in the sandbox."""
        path = Path(local_path)
        name = name or path.name
        if not name or "/" in name or name in (".", ".."):
            raise SandboxError(f"invalid file name {name!r}")
        size = path.stat().st_size
        if size > parse_size(self.config.data_size, "data_size"):
            raise SandboxError(f"{path} ({size} bytes) does not fit in /mnt/data ({self.config.data_size})")
        ids = self.config.uid_gid() or (0, 0)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar, path.open("rb") as handle:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, int(time.time())
            info.uid, info.gid = ids
            tar.addfile(info, handle)
        with self._lock:
            self.start()
            try:
                ok = self._guard(self._state["client"].api.put_archive, self._state["container"], DATA_DIR,
                                 buffer.getvalue())
            except docker.errors.APIError as exc:
                raise SandboxError(f"upload failed: {exc.explanation or exc}") from None
        if not ok:
            raise SandboxError("upload failed")
        return f"{DATA_DIR}/{name}"

    def read_file(self, name: str) -> bytes:
        """The bytes of a file under /mnt/data (``name`` relative to it, or absolute)."""
        relative = _data_path(name)
        cap = parse_size(self.config.max_download, "max_download")
        with self._lock:
            self.start()
            try:
                stream, stat = self._guard(self._state["client"].api.get_archive, self._state["container"],
                                           f"{DATA_DIR}/{relative}")
            except docker.errors.NotFound:
                raise FileNotFoundError(f"{DATA_DIR}/{relative}") from None
            except docker.errors.APIError as exc:
                raise SandboxError(f"download failed: {exc.explanation or exc}") from None
            if stat.get("size", 0) > cap:
                raise SandboxError(f"{relative} is larger than the {self.config.max_download} download limit")
            data = bytearray()
            for chunk in stream:
                data += chunk
                if len(data) > cap + 1024 * 1024:
                    raise SandboxError(f"{relative} is larger than the {self.config.max_download} download limit")
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
            member = tar.next()
            if member is None or not member.isreg():
                raise SandboxError(f"{DATA_DIR}/{relative} is not a regular file")
            handle = tar.extractfile(member)
            return handle.read() if handle else b""

    def download(self, name: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Copy a file out of /mnt/data to ``dest`` (a file or directory; default: cwd)."""
        data = self.read_file(name)
        target = Path(dest) if dest is not None else Path.cwd()
        if target.is_dir():
            target = target / PurePosixPath(_data_path(name)).name
        target.write_bytes(data)
        return target


class _Background(threading.Thread):
    """Runs ``fn`` in a thread; `join` re-raises its exception."""

    def __init__(self, fn: Any) -> None:
        super().__init__(daemon=True)
        self._fn, self._error = fn, None
        self.start()

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self._error is not None:
            raise self._error


def _data_path(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute():
        try:
            path = path.relative_to(DATA_DIR)
        except ValueError:
            raise SandboxError(f"only files under {DATA_DIR} can be downloaded, not {name!r}") from None
    if not path.parts or ".." in path.parts:
        raise SandboxError(f"invalid file name {name!r}")
    return str(path)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))
