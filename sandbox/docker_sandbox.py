"""A stateful, locked-down Python interpreter in one long-lived Docker container."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
import weakref
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors

from . import files
from .config import SandboxConfig, parse_size
from .docker_client import CONNECTION_ERRORS, connect, labels, sweep_orphans
from .errors import SandboxError, SandboxUnavailableError
from .image import find_built_image
from .protocol import ChannelClosed, FrameReader, ProtocolError, encode, valid_text
from .pull import ensure_image
from .result import ExecError, ExecResult

DEFAULT_IMAGE = "python:3.12-slim"
IMAGE_ENV = "OSS_AGENT_SANDBOX_IMAGE"
DATA_DIR = files.DATA_DIR
_DIED_KINDS = {"memory": "MemoryError", "protocol": "SandboxError"}


def lost(files_kept: bool = True) -> str:
    """The end of a restart message: what survived."""
    where = "files in /mnt/data are kept" if files_kept else "files in /mnt/data were lost too"
    return f"the Python process was restarted and all variables were lost ({where})"


@lru_cache(maxsize=1)
def server_source() -> str:
    """Source of the in-container REPL, passed to ``python3 -c``."""
    return resources.files(__package__).joinpath("repl_server.py").read_text(encoding="utf-8")


def _cleanup(state: dict[str, Any]) -> None:
    """Remove what a sandbox left behind (also run at interpreter exit)."""
    client = state.get("client")
    if client is None:
        return
    for key, remove in (
        ("container", lambda i: client.api.remove_container(i, force=True)),
        ("keeper", lambda i: client.api.remove_container(i, force=True)),
        ("volume", lambda n: client.api.remove_volume(n, force=True)),
    ):
        if state.get(key):
            try:
                remove(state[key])
            except Exception:
                pass
            state[key] = None


class DockerSandbox:
    """A Python interpreter whose state persists across `run` calls.

    ``image`` defaults to ``$OSS_AGENT_SANDBOX_IMAGE``, else an image ``python -m sandbox.image``
    built on this machine (found by its label), else ``python:3.12-slim``.
    ``timeout`` is the default per-cell limit in seconds. Other keyword options
    (network, memory, cpus, user, seccomp, ...) are described in
    `sandbox.config`; every default is the locked-down one.

    The container is created on `start` (or the first `run`) and removed by
    `close`, together with the /mnt/data volume.
    """

    def __init__(self, image: str | None = None, timeout: float = 120, *, client: Any = None, **options: Any):
        self.image: str | None = image or os.environ.get(IMAGE_ENV) or None  # None: found when the box starts
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
        self._keeper_started: str | None = None
        self._threads_told = 0  # threads still running that the model was told about
        self._finalizer = weakref.finalize(self, _cleanup, self._state)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> DockerSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
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
        """Call ``fn``; a vanished daemon becomes `SandboxUnavailableError`, a refusal `SandboxError`.

        After a refusal the container is dropped, so the next call starts afresh.
        """
        try:
            return self._api(fn, *args)
        except docker.errors.APIError as exc:
            restarted = self._state["container"] is not None
            if restarted:
                self._discard_container()
                self.restarts += 1
            then = "the next call starts a fresh sandbox" if restarted else "try again"
            raise SandboxError(f"Docker refused a sandbox operation ({_explain(exc)}); {then}") from None

    @staticmethod
    def _api(fn: Any, *args: Any) -> Any:
        """Call ``fn``, turning a vanished daemon into `SandboxUnavailableError` (Docker's refusals pass)."""
        try:
            return fn(*args)
        except CONNECTION_ERRORS as exc:
            raise SandboxUnavailableError(f"lost the connection to Docker: {exc}") from None

    def _client(self) -> docker.DockerClient:
        if self._state["client"] is None or not self._swept:
            self._state["client"] = connect(
                self.config.connect_timeout, self.config.docker_timeout, self._state["client"]
            )
        if not self._swept:
            sweep_orphans(self._state["client"])
            self._swept = True
        return self._state["client"]

    def _name(self, role: str) -> str:
        """A container name never used before, so a removal still in progress cannot collide with it."""
        return f"oss-agent-{role}-{self.session}-{self.restarts}-{secrets.token_hex(3)}"

    def _create(self, command: list[str], name: str, **overrides: Any) -> str:
        api = self._state["client"].api
        options = {**self.config.container_options(), **overrides}
        host_config = api.create_host_config(
            binds={self._state["volume"]: {"bind": DATA_DIR, "mode": "rw,nocopy"}},
            **{k: v for k, v in options.items() if k not in ("user", "working_dir", "environment")},
        )
        try:
            return api.create_container(
                self.image,
                command,
                user=options["user"],
                working_dir=options["working_dir"],
                environment=options["environment"],
                stdin_open=True,
                tty=False,
                name=name,
                labels=labels(self.session, self.config.labels),
                host_config=host_config,
            )["Id"]
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot create the sandbox container: {_explain(exc)}") from None

    def _remove(self, container: str) -> None:
        """Remove ``container``; one already being removed is waited for, one already gone is fine."""
        api = self._state["client"].api
        try:
            api.remove_container(container, force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a removal is already in progress
                raise SandboxError(f"cannot remove the sandbox container: {_explain(exc)}") from None
        try:
            api.wait(container, timeout=30, condition="removed")
        except (docker.errors.APIError, *CONNECTION_ERRORS):
            pass  # gone already, or slow: the next container has its own name anyway

    def _ensure_keeper(self) -> None:
        """Start the keeper that holds /mnt/data's tmpfs volume mounted.

        Docker unmounts a tmpfs volume (losing its files) when no running
        container uses it; the keeper, an idle process in a tiny locked-down
        container, lets files outlive the interpreter's container.
        """
        api = self._state["client"].api
        if self._keeper_running():
            return
        keeper, self._state["keeper"] = self._state["keeper"], None
        if keeper is not None:
            self._remove(keeper)
        keeper = self._create(
            [self.config.python, "-I", "-S", "-c", "import signal\nwhile True: signal.pause()"],
            self._name("keeper"),
            mem_limit=32 * 1024**2,
            memswap_limit=32 * 1024**2,
            pids_limit=8,
            nano_cpus=100_000_000,
        )
        self._state["keeper"] = keeper
        api.start(keeper)
        self._keeper_started = api.inspect_container(keeper)["State"].get("StartedAt")

    def _keeper_running(self) -> bool:
        """True if the keeper started last is still running, never restarted: it held /mnt/data all along."""
        keeper = self._state["keeper"]
        if keeper is None:
            return False
        try:
            state = self._state["client"].api.inspect_container(keeper)["State"]
        except (docker.errors.APIError, *CONNECTION_ERRORS):
            return False
        return bool(state.get("Running")) and state.get("StartedAt") == self._keeper_started

    def _start_container(self) -> None:
        client = self._client()
        if self.image is None:
            self.image = find_built_image(client) or DEFAULT_IMAGE
        ensure_image(client, self.image, pull=self.config.pull)
        api = client.api
        if self._state["volume"] is None:
            name = f"oss-agent-data-{self.session}"
            api.create_volume(
                name,
                driver="local",
                driver_opts=self.config.volume_options(),
                labels=labels(self.session, self.config.labels),
            )
            self._state["volume"] = name
        keeper = _Background(self._ensure_keeper)  # starts alongside the interpreter's container
        try:
            self._start_interpreter(api)
        finally:
            keeper.join()

    def _start_interpreter(self, api: Any) -> None:
        command = [self.config.python, "-u", "-c", server_source(), _json(self.config.server_options())]
        # The REPL's supervisor is the container's PID 1 itself (no docker-init), so that it can
        # make itself non-dumpable and cell code cannot read its memory or file descriptors.
        container = self._create(command, self._name("sandbox"), init=False)
        self._state["container"] = container
        try:
            self._sock = api.attach_socket(container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            raw = getattr(self._sock, "_sock", self._sock)
            self._reader = reader = FrameReader(raw, self.config.max_frame)
            api.start(container)
            ready = reader.read_message(time.monotonic() + self.config.startup_timeout)
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
            self._remove(container)

    def _death_reason(self) -> tuple[str, bool]:
        """Why the container's stream ended, and whether its container is gone."""
        api = self._state["client"].api
        container = self._state["container"]
        try:
            api.wait(container, timeout=5)
            state = api.inspect_container(container)["State"]
        except CONNECTION_ERRORS:
            return "it stopped answering", False
        except docker.errors.APIError:  # 404, or 409 while a removal is in progress
            return "its container was removed from outside", True
        if state.get("OOMKilled"):
            return self._out_of_memory(), False
        if state.get("Running"):
            return "it stopped answering", False
        if state.get("Status") in ("removing", "dead"):
            return "its container was removed from outside", True
        code = state.get("ExitCode")
        if code == 137:
            return "its container was killed (SIGKILL)", False
        return f"its container exited with code {code}", False

    def _out_of_memory(self) -> str:
        limit = self.config.memory
        return f"it ran out of memory (limit {limit})" if limit else "it ran out of memory"

    def _replace_container(self) -> bool:
        """Drop the broken container (the next `run` starts a new one); True if /mnt/data survived."""
        kept = self._keeper_running()
        self._discard_container()
        self.restarts += 1
        return kept

    # ------------------------------------------------------------ running code

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell; variables, imports and files persist between calls.

        User-code errors, timeouts, out-of-memory and crashes of the Python
        process come back in the result. Raises `SandboxUnavailableError` when
        Docker cannot be reached, and `SandboxError` when the sandbox cannot be
        (re)started or its container was removed or killed from outside during
        the call; the next call then starts a fresh sandbox.
        """
        limit = self.timeout if timeout is None else float(timeout)
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            return self._guard(self._run, code, limit)

    def _run(self, code: str, limit: float) -> ExecResult:
        size = len(code.encode("utf-8", "surrogatepass"))
        cap = parse_size(self.config.max_code, "max_code") or 0
        if size > cap:
            return ExecResult(
                error=ExecError(
                    "ValueError", f"the code is {size / 1e6:.1f} MB; at most {self.config.max_code} can run in one call"
                )
            )
        notice = None
        if self._state["container"] is not None and self._reader is not None and self._reader.closed():
            reason, _ = self._death_reason()
            kept = self._replace_container()
            notice = (
                f"The previous Python process had stopped ({reason}); this code ran in a fresh one "
                f"and earlier variables were lost ({_files(kept)})."
            )
        if self._state["container"] is None:
            self._start_container()
        started = time.monotonic()
        cell_id = secrets.token_hex(8)
        reader = self._reader
        assert reader is not None
        try:
            self._sock_send(encode({"type": "exec", "id": cell_id, "code": code}))
            reply = reader.read_message(started + limit)
        except TimeoutError:
            return self._after_timeout(cell_id, limit, started)
        except ChannelClosed:
            return self._after_container_death(started)
        except ProtocolError as exc:
            self._signal("SIGKILL")
            kept = self._replace_container()
            return ExecResult(
                error=ExecError("SandboxError", f"The sandbox broke the protocol ({exc}); {lost(kept)}"),
                restarted=True,
                duration_s=time.monotonic() - started,
            )
        return self._reply_result(reply, cell_id, started, notice)

    def _sock_send(self, data: bytes) -> None:
        raw = getattr(self._sock, "_sock", self._sock)
        raw.settimeout(10)
        try:
            raw.sendall(data)
        except TimeoutError:
            raise ProtocolError("the interpreter does not read its input") from None
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None

    def _reply_result(
        self, reply: dict[str, Any], cell_id: str, started: float, notice: str | None = None
    ) -> ExecResult:
        if reply.get("type") != "result" or reply.get("id") != cell_id:
            self._signal("SIGKILL")
            kept = self._replace_container()
            return ExecResult(
                error=ExecError("SandboxError", f"The sandbox broke the protocol (unexpected message); {lost(kept)}"),
                restarted=True,
                duration_s=time.monotonic() - started,
            )
        notes = [notice] if notice else []
        restarted = notice is not None
        if reply.get("lost"):
            notes.append(
                f"The Python process had stopped since the last call ({valid_text(reply['lost'])}); "
                "this code ran in a fresh one and earlier variables were lost (files in /mnt/data "
                "are kept)."
            )
            restarted = True
            self.restarts += 1
        error = _exec_error(reply.get("error"))
        died = reply.get("died")
        if isinstance(died, dict):
            reason = valid_text(died.get("reason"))
            kind = _DIED_KINDS.get(str(died.get("kind")), "ProcessDied")
            if kind == "MemoryError":
                reason = self._out_of_memory()
            what = "broke the sandbox's protocol" if kind == "SandboxError" else "died while running this code"
            error = ExecError(kind, f"The Python process {what}: {reason}; {lost()}")
            restarted = True
            self.restarts += 1
        if reply.get("strays"):
            notes.append("Background processes started by this code were stopped.")
        threads = reply.get("threads")
        threads = threads if isinstance(threads, int) else 0
        if restarted:
            self._threads_told = 0
        if threads > self._threads_told and self.config.kill_strays:  # told once, when their number grows
            many = threads > 1
            notes.append(
                f"{threads} thread{'s' if many else ''} started by this code {'are' if many else 'is'} "
                "still running (asked to stop, did not yet): what they print appears in later results, "
                "and they can change variables at any time."
            )
        self._threads_told = threads
        result = reply.get("result")
        return ExecResult(
            stdout=valid_text(reply.get("stdout")),
            stderr=valid_text(reply.get("stderr")),
            background=valid_text(reply.get("background")),
            result=None if result is None else valid_text(result),
            error=error,
            duration_s=time.monotonic() - started,
            truncated=bool(reply.get("truncated")),
            notice=" ".join(notes) or None,
            restarted=restarted,
        )

    def _after_timeout(self, cell_id: str, limit: float, started: float) -> ExecResult:
        reader = self._reader
        assert reader is not None
        try:
            self._sock_send(encode({"type": "interrupt"}))
            reply = reader.read_message(time.monotonic() + self.config.interrupt_grace)
        except (TimeoutError, ProtocolError, ChannelClosed):
            reply = None
        if reply is not None and reply.get("type") == "result" and reply.get("id") == cell_id:
            result = self._reply_result(reply, cell_id, started)
            if result.error is None or result.error.type != "KeyboardInterrupt":
                return result  # it finished just as the deadline passed, or died
            error = ExecError(
                "TimeoutError", f"execution exceeded {limit:g} s and was interrupted; variables are preserved"
            )
            return ExecResult(
                stdout=result.stdout,
                stderr=result.stderr,
                background=result.background,
                error=error,
                timed_out=True,
                duration_s=result.duration_s,
                truncated=result.truncated,
                notice=result.notice,
            )
        kept = self._restart_kernel(reader)
        message = f"execution exceeded {limit:g} s and did not stop when interrupted; {lost(kept)}"
        return ExecResult(
            error=ExecError("TimeoutError", message),
            timed_out=True,
            restarted=True,
            duration_s=time.monotonic() - started,
        )

    def _restart_kernel(self, reader: FrameReader) -> bool:
        """Replace the Python process inside the container, else the container; True if files were kept."""
        self.restarts += 1
        try:
            self._sock_send(encode({"type": "restart"}))
            deadline = time.monotonic() + 10
            while reader.read_message(deadline).get("type") != "restarted":
                pass  # a late result of the abandoned cell
            return True
        except (TimeoutError, ProtocolError, ChannelClosed):
            self._signal("SIGKILL")
            kept = self._keeper_running()
            self._discard_container()
            return kept

    def _after_container_death(self, started: float) -> ExecResult:
        """The container's stream ended during a cell: only memory is the code's doing; the rest is raised."""
        if self._closed:  # `close()` ended the cell
            self._drop_socket()
            return ExecResult(
                error=ExecError("SandboxError", "the sandbox was closed while this code ran"),
                restarted=True,
                duration_s=time.monotonic() - started,
            )
        reason, removed = self._death_reason()
        if not removed:
            self._signal("SIGKILL")
        kept = self._replace_container()
        if "out of memory" in reason:
            return ExecResult(
                error=ExecError(
                    "MemoryError", f"The Python process died while running this code: {reason}; {lost(kept)}"
                ),
                restarted=True,
                duration_s=time.monotonic() - started,
            )
        raise SandboxError(
            f"the sandbox stopped while running this code ({reason}); variables were lost and "
            f"{_files(kept)}; the next call starts a fresh sandbox"
        )

    # ------------------------------------------------------------ files

    def upload(self, local_path: str | os.PathLike[str], name: str | None = None) -> str:
        """Copy a local file into /mnt/data under ``name`` (default: its own name); returns its path there."""
        path = Path(local_path)
        name = files.upload_name(path.name if name is None else name)
        size = path.stat().st_size
        if size > (parse_size(self.config.data_size, "data_size") or 0):
            raise SandboxError(f"{path} ({size} bytes) does not fit in /mnt/data ({self.config.data_size})")
        with path.open("rb") as handle:
            archive = files.tar_one(handle, name, size, self.config.uid_gid() or (0, 0))
        with self._lock:
            self.start()
            try:
                ok = self._api(self._state["client"].api.put_archive, self._state["container"], DATA_DIR, archive)
            except docker.errors.APIError as exc:
                raise SandboxError(f"upload failed: {_explain(exc)}") from None
        if not ok:
            raise SandboxError("upload failed")
        return f"{DATA_DIR}/{name}"

    def read_file(self, name: str) -> bytes:
        """The bytes of a regular file under /mnt/data (``name`` relative to it, or absolute).

        No component of the path may be a symbolic link.
        """
        relative = files.data_path(name)
        full = f"{DATA_DIR}/{relative}"
        cap = parse_size(self.config.max_download, "max_download") or 0
        with self._lock:
            self.start()
            api, container = self._state["client"].api, self._state["container"]
            try:
                self._api(files.refuse_links, api, container, relative)
                stream, stat = self._api(api.get_archive, container, full)
            except docker.errors.NotFound:
                raise FileNotFoundError(full) from None
            except docker.errors.APIError as exc:
                raise SandboxError(f"download failed: {_explain(exc)}") from None
            if stat.get("size", 0) > cap:
                raise SandboxError(f"{relative} is larger than the {self.config.max_download} download limit")
            data = bytearray()
            for chunk in stream:
                data += chunk
                if len(data) > cap + 1024 * 1024:
                    raise SandboxError(f"{relative} is larger than the {self.config.max_download} download limit")
        return files.untar_one(bytes(data), full)

    def download(self, name: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Copy a file out of /mnt/data to ``dest`` (a file or directory; default: cwd).

        An existing file at the target is replaced, never written through (a
        symbolic link there is replaced, not followed).
        """
        data = self.read_file(name)
        target = Path(dest) if dest is not None else Path.cwd()
        if target.is_dir() and not target.is_symlink():
            target = target / PurePosixPath(files.data_path(name)).name
        return files.write_replacing(target, data)


class _Background(threading.Thread):
    """Runs ``fn`` in a thread; `join` re-raises its exception."""

    def __init__(self, fn: Any) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:
            self._error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self._error is not None:
            raise self._error


def _exec_error(error: Any) -> ExecError | None:
    if error is None:
        return None
    if not isinstance(error, dict):
        return ExecError("Error", valid_text(error))
    return ExecError(
        valid_text(error.get("ename", "Error")),
        valid_text(error.get("evalue", "")),
        valid_text(error.get("traceback", "")),
    )


def _files(kept: bool) -> str:
    return "files in /mnt/data were kept" if kept else "files in /mnt/data were lost (their keeper was removed too)"


def _explain(exc: docker.errors.APIError) -> str:
    text = str(exc.explanation or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))
