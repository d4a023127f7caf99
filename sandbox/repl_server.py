"""The in-container side of the sandbox (standard library only): a supervisor and a kernel.

Started as ``python3 -u -c <this source> <json options>``, this process is the
container's PID 1, the *supervisor*. It makes itself non-dumpable (so other
processes of the same user cannot open its ``/proc/1/mem``, ``fd`` or
``environ``), keeps the host channel (the container's stdin/stdout) to itself
and forks the *kernel*, the process that runs cells. The kernel talks to the
supervisor over two private pipes and its fds 1/2 are pipes the supervisor
reads, so cell code can neither write to the host channel nor close it: what it
does to its own pipes is noticed at once (end of file, a foreign frame, or, on
a 0.25 s check, a pipe no longer where the kernel keeps it) and reported as a
restart, as is the kernel's death (exit, signal, out of memory). Every frame is
a 4-byte big-endian length followed by UTF-8 JSON.

Host -> supervisor: ``exec {id, code}``, ``interrupt``, ``restart``.
Supervisor -> host: ``ready`` once; one ``result {id, stdout, stderr,
background, result, error, truncated, strays, threads, died}`` per exec;
``restarted`` after ``restart``. The kernel's own report (result, error) is
untrusted content: the supervisor caps it and adds what it observed itself.
"""

import ast
import builtins
import json
import linecache
import os
import select
import signal
import struct
import sys
import time
import traceback

_LEN = struct.Struct(">I")
_MAX_HOST_FRAME = 64 * 1024 * 1024
_F_SETPIPE_SZ = 1031
_PR_SET_DUMPABLE = 4
_CHECK_EVERY = 0.25


# ---------------------------------------------------------------- shared helpers


class _Sink:
    """Keeps the first and the last ``limit // 2`` bytes of a stream."""

    def __init__(self, limit):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self):
        tail = bytes(self.tail[-self.half :])
        dropped = self.total - len(self.head) - len(tail)
        if dropped <= 0:
            return (bytes(self.head) + tail).decode("utf-8", "replace"), False
        marker = f"\n[... {dropped} bytes of output omitted ...]\n"
        return bytes(self.head).decode("utf-8", "replace") + marker + tail.decode("utf-8", "replace"), True


def _cap(text, limit):
    if text is None or len(text) <= limit:
        return text, False
    half = limit // 2
    return text[:half] + f"\n[... {len(text) - 2 * half} characters omitted ...]\n" + text[-half:], True


def _valid(text):
    """``text`` without lone surrogates (each becomes U+FFFD)."""
    if text is None:
        return None
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if not text.isascii() else text


def _write_frame(fd, message):
    data = json.dumps(message).encode("ascii")
    data = _LEN.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class _FrameBuffer:
    """Frames from a non-blocking fd; `ValueError` for a frame over ``limit`` or not a JSON object."""

    def __init__(self, limit):
        self.limit, self.data = limit, bytearray()

    def feed(self, chunk):
        self.data += chunk
        frames = []
        while len(self.data) >= 4:
            (size,) = _LEN.unpack_from(self.data)
            if size > self.limit:
                raise ValueError(f"a frame of {size} bytes exceeds the {self.limit}-byte limit")
            if len(self.data) < 4 + size:
                break
            body = bytes(self.data[4 : 4 + size])
            del self.data[: 4 + size]
            message = json.loads(body.decode("utf-8"))
            if not isinstance(message, dict):
                raise ValueError("a frame that is not a JSON object")
            frames.append(message)
        return frames


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _set_dumpable(flag):
    try:
        return _libc().prctl(_PR_SET_DUMPABLE, int(flag), 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def _live_pids(exclude):
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in exclude:
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != b"Z":
                pids.append(int(name))
    return pids


def _oom_kills():
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


# ---------------------------------------------------------------- the kernel (runs cells)


def _safe_str(obj):
    try:
        return str(obj)
    except BaseException:
        return f"<unprintable {type(obj).__name__}>"


def _format_error(exc, limit):
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        text = f"{type(exc).__name__}: {_safe_str(exc)}\n"
    return {"ename": type(exc).__name__, "evalue": _cap(_safe_str(exc), limit)[0], "traceback": _cap(text, limit)[0]}


class Kernel:
    """Runs cells in one persistent namespace; reads requests and writes reports on private pipes."""

    def __init__(self, request_fd, report_fd, options):
        self.request_fd, self.report_fd = request_fd, report_fd
        self.limit = int(options.get("output_limit", 65536))
        self.kill_strays = bool(options.get("kill_strays", True))
        self.pid = os.getpid()
        self.count = 0
        self.running = False
        self.asked = set()  # threads already asked to stop
        self.ns = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
        os.register_at_fork(after_in_child=lambda: self._close(request_fd, report_fd))
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")  # under memory pressure the kernel goes first, never the supervisor
        except OSError:
            pass

    @staticmethod
    def _close(*fds):
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_sigint(self, signum, frame):
        if self.running:
            raise KeyboardInterrupt

    def run_cell(self, code):
        self.count += 1
        filename = f"<cell-{self.count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        result = error = None
        try:
            self.running = True
            try:
                tree = ast.parse(code, filename)
                last = None
                if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
                    last = ast.Expression(tree.body.pop().value)
                exec(compile(tree, filename, "exec", dont_inherit=True), self.ns)
                if last is not None:
                    value = eval(compile(last, filename, "eval", dont_inherit=True), self.ns)
                    if value is not None:
                        self.ns["_"] = value
                        result = repr(value)
            finally:
                self.running = False
        except BaseException as exc:
            if os.getpid() != self.pid:
                os._exit(0)
            error = _format_error(exc, self.limit)
            del exc
        if os.getpid() != self.pid:  # a forked child fell out of the cell
            os._exit(0)
        return result, error

    def stop_strays(self):
        """Kill every process in the container except init and this kernel; True if there were any."""
        if not self.kill_strays or not _live_pids((1, self.pid)):
            return False
        deadline = time.monotonic() + 2.0
        while True:
            try:
                os.kill(-1, signal.SIGKILL)  # one atomic sweep: nothing can fork past it
            except OSError:
                pass
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass
            if not _live_pids((1, self.pid)) or time.monotonic() > deadline:
                return True
            time.sleep(0.002)

    def stop_threads(self):
        """Ask every thread the cell left behind to stop (SystemExit); wait briefly for new ones."""
        import threading

        main = threading.main_thread()
        others = [t for t in threading.enumerate() if t is not main and t.is_alive()]
        fresh = [t for t in others if t.ident not in self.asked]
        if not fresh or not self.kill_strays:
            return
        try:
            import ctypes

            raise_in = ctypes.pythonapi.PyThreadState_SetAsyncExc
        except (ImportError, AttributeError):
            return
        for t in fresh:
            self.asked.add(t.ident)
            raise_in(ctypes.c_ulong(t.ident or 0), ctypes.py_object(SystemExit))
        deadline = time.monotonic() + 0.5
        for t in fresh:
            t.join(max(0.0, deadline - time.monotonic()))

    def serve(self):
        while True:
            head = _read_exact(self.request_fd, 4)
            if head is None:
                os._exit(0)
            body = _read_exact(self.request_fd, _LEN.unpack(head)[0])
            if body is None:
                os._exit(0)
            request = json.loads(body.decode("utf-8"))
            result, error = self.run_cell(str(request.get("code", "")))
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except BaseException:
                    pass
            strays = self.stop_strays()
            self.stop_threads()
            report = {
                "token": request.get("token"),
                "result": _cap(result, self.limit)[0],
                "error": error,
                "strays": strays,
            }
            try:
                _write_frame(self.report_fd, report)
            except (OSError, ValueError):
                os._exit(70)  # the cell broke this end of the channel


# ---------------------------------------------------------------- the supervisor (PID 1)


class _Child:
    """The supervisor's view of one kernel process."""

    def __init__(self, pid, request_w, report_r, out_r, err_r, watched, limit):
        self.pid, self.request_w, self.report_r = pid, request_w, report_r
        self.outputs = {out_r: "stdout", err_r: "stderr"}
        self.watched = watched  # the kernel's fd number -> the pipe it must still be
        self.frames = _FrameBuffer(24 * limit + 65536)  # three capped texts, JSON-escaped
        self.pending = bytearray()  # request bytes not yet written
        self.status = None  # wait status once reaped

    def fds(self):
        return [self.report_r, *self.outputs]


class Supervisor:
    def __init__(self, options):
        self.options = options
        self.limit = int(options.get("output_limit", 65536))
        self.kill_strays = bool(options.get("kill_strays", True))
        self.protected = _set_dumpable(False)
        self.host = _FrameBuffer(_MAX_HOST_FRAME)
        self.kernel = None
        self.cell = None  # the running exec: id, token, sinks
        self.background = _Sink(self.limit)
        self.oom_base = None
        self.lost = None  # why the kernel was replaced between cells, told with the next result
        self.last_token = None  # of the last cell whose result was sent
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.wake_r = wake_r
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGINT, self._forward_sigint)
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        self.private = [0, 1, wake_r, wake_w]

    def _forward_sigint(self, signum, frame):
        if self.kernel is not None:
            try:
                os.kill(self.kernel.pid, signal.SIGINT)
            except OSError:
                pass

    # -- the kernel's life

    def spawn(self):
        request_r, request_w = os.pipe()
        report_r, report_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for w in (out_w, err_w):
            try:
                import fcntl

                fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)
            except (ImportError, OSError):
                pass
        watched = {request_r: os.fstat(request_r).st_ino, report_w: os.fstat(report_w).st_ino}
        self.oom_base = _oom_kills()
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                _set_dumpable(True)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                keep = {0, 1, 2, request_r, report_w}
                for name in os.listdir("/proc/self/fd"):
                    if int(name) not in keep:
                        try:
                            os.close(int(name))
                        except OSError:
                            pass
                Kernel(request_r, report_w, self.options).serve()
            finally:
                os._exit(70)
        for fd in (request_r, report_w, out_w, err_w):
            os.close(fd)
        for fd in (request_w, report_r, out_r, err_r):
            os.set_blocking(fd, False)
        self.kernel = _Child(pid, request_w, report_r, out_r, err_r, watched, self.limit)
        return self.kernel

    def _close_kernel(self):
        kernel, self.kernel = self.kernel, None
        if kernel is None:
            return
        for fd in (kernel.request_w, *kernel.fds()):
            try:
                os.close(fd)
            except OSError:
                pass

    def _reap(self):
        """Collect every exited child; True if that included the kernel."""
        found = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return found
            if pid == 0:
                return found
            if self.kernel is not None and pid == self.kernel.pid:
                self.kernel.status = status
                found = True

    def _why_dead(self, status):
        if os.WIFEXITED(status):
            return "exit", f"it exited with code {os.WEXITSTATUS(status)}"
        sig = os.WTERMSIG(status)
        kills = _oom_kills()
        if sig == signal.SIGKILL and kills is not None and self.oom_base is not None and kills > self.oom_base:
            return "memory", "it ran out of memory"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "exit", f"it was killed ({name})"

    def kill_kernel(self):
        kernel = self.kernel
        if kernel is None:
            return
        if kernel.status is None:
            try:
                os.kill(kernel.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(kernel.pid, 0)
            except ChildProcessError:
                pass
        self._close_kernel()
        self.sweep()

    def sweep(self):
        """Kill every process but this one and the kernel; True if there were any."""
        keep = (1, self.kernel.pid if self.kernel else 1)
        found = False
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            others = _live_pids(keep)
            if not others:
                break
            found = True
            for pid in others:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._reap()
            time.sleep(0.002)
        return found

    def _threads(self):
        if self.kernel is None:
            return 0
        try:
            with open(f"/proc/{self.kernel.pid}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        return max(int(line.split()[1]) - 1, 0)
        except (OSError, ValueError, AttributeError):
            pass
        return 0

    def _channel_intact(self):
        kernel = self.kernel
        if kernel is None:
            return True
        for fd, inode in kernel.watched.items():
            try:
                if os.readlink(f"/proc/{kernel.pid}/fd/{fd}") != f"pipe:[{inode}]":
                    return False
            except OSError:
                return False
        return True

    # -- host messages

    def send(self, message):
        _write_frame(1, message)

    def on_host(self, message):
        kind = message.get("type")
        if kind == "exec":
            kernel = self.kernel or self.spawn()
            token = os.urandom(16).hex()
            request = json.dumps({"token": token, "code": str(message.get("code", ""))}).encode("utf-8", "replace")
            kernel.pending += _LEN.pack(len(request)) + request
            background, self.background = self.background, _Sink(self.limit)
            self.cell = {
                "id": message.get("id"),
                "token": token,
                "background": background,
                "lost": self.lost,
                "stdout": _Sink(self.limit),
                "stderr": _Sink(self.limit),
                "checked": time.monotonic(),
            }
            self.lost = None
        elif kind == "interrupt":
            self._forward_sigint(signal.SIGINT, None)
        elif kind == "restart":
            self.kill_kernel()
            self.cell = None
            self.spawn()
            self.send({"type": "restarted"})

    def finish(self, report=None, died=None):
        """Send the running cell's result: the kernel's report, or how the kernel died."""
        cell, self.cell = self.cell, None
        if cell is None:
            return
        self.drain()
        strays = self.sweep() if self.kill_strays and died is None else False
        texts = [cell[name].text() for name in ("stdout", "stderr", "background")]
        report = report or {}
        result = report.get("result")
        result, res_cut = _cap(_valid(result) if isinstance(result, str) else None, self.limit)
        error = report.get("error")
        if error is not None:
            error = error if isinstance(error, dict) else {"ename": "Error", "evalue": str(error)}
            error = {k: _cap(_valid(str(error.get(k, ""))), self.limit)[0] for k in ("ename", "evalue", "traceback")}
        self.send(
            {
                "type": "result",
                "id": cell["id"],
                "stdout": texts[0][0],
                "stderr": texts[1][0],
                "background": texts[2][0],
                "result": result,
                "error": error,
                "truncated": any(t[1] for t in texts) or res_cut,
                "strays": bool(report.get("strays")) or strays,
                "threads": self._threads() if self.kernel else 0,
                "died": died,
                "lost": cell["lost"],
            }
        )

    def drain(self):
        if self.kernel is None:
            return
        for fd in list(self.kernel.outputs):
            while self._read_output(fd):
                pass

    def _read_output(self, fd):
        kernel = self.kernel
        if kernel is None:
            return False
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            del kernel.outputs[fd]
            os.close(fd)
            return False
        if self.cell is not None:
            self.cell[kernel.outputs[fd]].add(data)
        else:
            self.background.add(data)
        return True

    def broken(self, why):
        """The kernel broke its channel: replace it and report the running cell (if any)."""
        if self.kernel is not None and self.kernel.status is not None:
            kind, why = self._why_dead(self.kernel.status)
        else:
            kind = "protocol"
        if self.cell is not None:
            self.drain()
        self.kill_kernel()
        if self.cell is not None:
            self.finish(died={"kind": kind, "reason": why})
        else:
            self.lost = why
        self.spawn()

    def on_report(self):
        kernel = self.kernel
        if kernel is None:
            return
        try:
            data = os.read(kernel.report_r, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            deadline = time.monotonic() + 0.2  # a dying process closes its pipes just before it exits
            while kernel.status is None and time.monotonic() < deadline and not self._reap():
                time.sleep(0.01)
            self.broken("it closed its channel to the sandbox")
            return
        try:
            frames = kernel.frames.feed(data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.broken(f"it sent a malformed message ({exc})")
            return
        for frame in frames:
            token = frame.get("token")
            if token is not None and token == self.last_token:
                self.broken(
                    "the code before this call sent a forged result and went on running; "
                    + ("this code may not have run" if self.cell else "it was stopped")
                )
                return
            if self.cell is None or token != self.cell["token"]:
                self.broken("it sent a message that was not its result")
                return
            self.last_token = token
            self.finish(report=frame)

    def serve(self):
        self.spawn()
        self.send({"type": "ready", "pid": os.getpid(), "python": sys.version.split()[0], "protected": self.protected})
        while True:
            kernel = self.kernel
            readable = [0, self.wake_r] + (kernel.fds() if kernel else [])
            writable = [kernel.request_w] if kernel is not None and kernel.pending else []
            try:
                ready, can_write, _ = select.select(readable, writable, [], _CHECK_EVERY if self.cell else None)
            except InterruptedError:
                continue
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
            if self._reap() and self.kernel is not None:
                self.drain()
                self.broken("")
                continue
            if 0 in ready:
                chunk = os.read(0, 1 << 20)
                if not chunk:
                    os._exit(0)
                for message in self.host.feed(chunk):
                    self.on_host(message)
            kernel = self.kernel
            if kernel is None:
                continue
            if kernel.request_w in can_write and kernel.pending:
                try:
                    del kernel.pending[: os.write(kernel.request_w, kernel.pending)]
                except BlockingIOError:
                    pass
                except OSError:
                    self.broken("it closed its channel to the sandbox")
                    continue
            for fd in list(kernel.outputs):
                if fd in ready:
                    while self._read_output(fd):
                        pass
            if kernel.report_r in ready:
                self.on_report()
            if self.cell is not None and self.kernel is not None:
                now = time.monotonic()
                if now - self.cell["checked"] >= _CHECK_EVERY:
                    self.cell["checked"] = now
                    if not self._channel_intact():
                        self.broken("it closed or replaced its channel to the sandbox")


def main():
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    sys.argv = [""]
    try:
        Supervisor(options).serve()
    except BaseException:
        os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(70)


if __name__ == "__main__":
    main()
