"""The REPL that runs inside the sandbox container (standard library only).

It is started as ``python3 -u -c <this source> <json options>`` and talks to the
host over the container's stdin/stdout: every message is a 4-byte big-endian
length followed by UTF-8 JSON. At start it moves the protocol onto private file
descriptors, points fd 0 at /dev/null and fds 1/2 at pipes drained by a thread,
so nothing user code prints can reach the protocol stream.

Host -> server: ``{"type": "exec", "id": ..., "code": ...}``.
Server -> host: ``{"type": "ready", ...}`` once, then one
``{"type": "result", "id", "stdout", "stderr", "result", "error", "truncated",
"strays"}`` per cell.
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
import threading
import time
import traceback

_LEN = struct.Struct(">I")
_MAX_INPUT = 64 * 1024 * 1024
_F_SETPIPE_SZ = 1031


class _Sink:
    """Keeps the first and the last ``limit // 2`` bytes of a stream."""

    def __init__(self, limit):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        if not data:
            return
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
        tail = bytes(self.tail[-self.half:])
        dropped = self.total - len(self.head) - len(tail)
        if dropped <= 0:
            return (bytes(self.head) + tail).decode("utf-8", "replace"), False
        marker = "\n[... %d bytes of output omitted ...]\n" % dropped
        return (
            bytes(self.head).decode("utf-8", "replace") + marker + tail.decode("utf-8", "replace"),
            True,
        )


class _Stream:
    def __init__(self, limit):
        self.limit = limit
        self.current = _Sink(limit)
        self.finished = None
        self.carry = b""
        self.seen = False

    def feed(self, data, sentinel):
        if sentinel is None or self.seen:
            self.current.add(data)
            return
        buf = self.carry + data
        i = buf.find(sentinel)
        if i >= 0:
            self.current.add(buf[:i])
            self.finished, self.current = self.current, _Sink(self.limit)
            self.current.add(buf[i + len(sentinel):])
            self.carry = b""
            self.seen = True
            return
        keep = len(sentinel) - 1
        if len(buf) > keep:
            self.current.add(buf[:-keep])
            buf = buf[-keep:]
        self.carry = buf


class _Capture:
    """Fds 1 and 2 are pipes; a thread drains them into bounded sinks.

    Between cells, output (from threads or children) accumulates and is shown
    at the start of the next cell's output. A random sentinel written after a
    cell marks where that cell's output ends.
    """

    def __init__(self, limit):
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sentinel = None
        self.readers = {}
        self.writers = {}
        for fd in (1, 2):
            r, w = os.pipe()
            try:
                import fcntl

                fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)
            except (ImportError, OSError):
                pass
            self.readers[r] = _Stream(limit)
            self.writers[fd] = w
        self.rebind()
        threading.Thread(target=self._pump, name="output-pump", daemon=True).start()

    def rebind(self):
        for fd, w in self.writers.items():
            os.dup2(w, fd)

    def private_fds(self):
        return list(self.readers) + list(self.writers.values())

    def _pump(self):
        fds = list(self.readers)
        while fds:
            ready, _, _ = select.select(fds, [], [])
            for r in ready:
                data = os.read(r, 1 << 20)
                if not data:
                    fds.remove(r)
                    continue
                with self.lock:
                    self.readers[r].feed(data, self.sentinel)
                    if self.sentinel is not None and all(s.seen for s in self.readers.values()):
                        self.done.set()

    def collect(self, wait=5.0):
        for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                f.flush()
            except Exception:
                pass
        token = b"\x00\x1e" + os.urandom(12).hex().encode() + b"\x1e\x00"
        with self.lock:
            self.done.clear()
            for s in self.readers.values():
                s.seen, s.carry, s.finished = False, b"", None
            self.sentinel = token
        for w in self.writers.values():
            try:
                os.write(w, token)
            except OSError:
                pass
        self.done.wait(wait)
        out = []
        with self.lock:
            self.sentinel = None
            for s in self.readers.values():
                sink = s.finished
                if sink is None:  # the sentinel never came back: take what is there
                    sink, s.current = s.current, _Sink(s.limit)
                    sink.add(s.carry)
                    s.carry = b""
                s.seen, s.finished = False, None
                out.append(sink.text())
        return out


def _cap(text, limit):
    if text is None or len(text) <= limit:
        return text, False
    half = limit // 2
    omitted = len(text) - 2 * half
    return text[:half] + "\n[... %d characters omitted ...]\n" % omitted + text[-half:], True


def _safe_str(obj):
    try:
        return str(obj)
    except BaseException:
        return "<unprintable %s>" % type(obj).__name__


def _format_error(exc, limit):
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        text = "%s: %s\n" % (type(exc).__name__, _safe_str(exc))
    return {
        "ename": type(exc).__name__,
        "evalue": _cap(_safe_str(exc), limit)[0],
        "traceback": _cap(text, limit)[0],
    }


class Server:
    def __init__(self, options):
        self.limit = int(options.get("output_limit", 65536))
        self.kill_strays = bool(options.get("kill_strays", True))
        self.pid = os.getpid()
        self.count = 0
        self.running = False
        self.ns = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
        self.proto_in = os.dup(0)
        self.proto_out = os.dup(1)
        self.proto_err = os.dup(2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.capture = _Capture(self.limit)
        private = [self.proto_in, self.proto_out, self.proto_err] + self.capture.private_fds()
        os.register_at_fork(after_in_child=lambda: self._close_all(private))
        signal.signal(signal.SIGINT, self._on_sigint)

    @staticmethod
    def _close_all(fds):
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_sigint(self, signum, frame):
        if self.running:
            raise KeyboardInterrupt

    def _read_exact(self, n):
        chunks = []
        while n:
            chunk = os.read(self.proto_in, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read(self):
        head = self._read_exact(4)
        if head is None:
            return None
        (size,) = _LEN.unpack(head)
        if size > _MAX_INPUT:
            raise ValueError("input frame too large")
        body = self._read_exact(size)
        return None if body is None else json.loads(body.decode("utf-8"))

    def send(self, msg):
        data = json.dumps(msg).encode("utf-8")
        data = _LEN.pack(len(data)) + data
        while data:
            n = os.write(self.proto_out, data)
            data = data[n:]

    def run_cell(self, code):
        self.count += 1
        filename = "<cell-%d>" % self.count
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        result = error = None
        self.capture.rebind()
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
        except BaseException as exc:  # noqa: B902 - the cell's errors are its output
            if os.getpid() != self.pid:
                os._exit(0)
            error = _format_error(exc, self.limit)
            del exc
        if os.getpid() != self.pid:  # a forked child fell out of the cell
            os._exit(0)
        return result, error

    def _others(self):
        """Live (non-zombie) processes other than init and this server."""
        pids = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in (1, self.pid):
                try:
                    with open("/proc/%s/stat" % name, "rb") as f:
                        state = f.read().rsplit(b")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state != b"Z":
                    pids.append(int(name))
        return pids

    def stop_strays(self):
        """Kill every process in the container except init and this server."""
        if not self.kill_strays:
            return False
        try:
            os.kill(-1, signal.SIGKILL)  # one atomic sweep: nothing can fork past it
        except OSError:
            return False
        deadline = time.monotonic() + 2.0
        while True:
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass
            if not self._others() or time.monotonic() > deadline:
                return True
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            time.sleep(0.002)

    def handle(self, msg):
        if msg.get("type") != "exec":
            return {"type": "error", "message": "unknown message"}
        result, error = self.run_cell(str(msg.get("code", "")))
        strays = self.stop_strays()
        (out, out_cut), (err, err_cut) = self.capture.collect()
        result, res_cut = _cap(result, self.limit)
        return {
            "type": "result",
            "id": msg.get("id"),
            "stdout": out,
            "stderr": err,
            "result": result,
            "error": error,
            "truncated": out_cut or err_cut or res_cut,
            "strays": strays,
        }

    def serve(self):
        self.send({"type": "ready", "pid": self.pid, "python": sys.version.split()[0]})
        while True:
            try:
                msg = self.read()
                if msg is None:
                    return
                self.send(self.handle(msg))
            except KeyboardInterrupt:  # an interrupt that arrived between cells
                continue


def main():
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    sys.argv = [""]
    server = Server(options)
    try:
        server.serve()
    except BaseException:
        os.write(server.proto_err, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(70)
    os._exit(0)


if __name__ == "__main__":
    main()
