"""A scripted fake Ollama server speaking the real NDJSON shapes.

`FakeOllama` holds the script (Harmony completions as text, replayed in order
for successive `/api/generate` calls) and records every request. Serve it
either in-process through respx (`respx_ollama(fake)`) or as a real HTTP
server on 127.0.0.1 (`FakeOllamaServer(fake)`, or standalone:
`python tests/fake_ollama.py --port 0 --script script.json`, which prints its
URL on the first stdout line and stops by itself after `--lifetime` seconds).

Script file: a JSON list of completions, or an object
`{"completions": [...], "models": [...], "version": "...", "chunking": ...}`;
a completion is a string or an object with the fields of `Completion`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    from agent.harmony.encoding import get_encoding
except ModuleNotFoundError:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from agent.harmony.encoding import get_encoding

CREATED_AT = "2026-08-21T10:00:00.000000Z"


@dataclass
class Completion:
    """One scripted `/api/generate` answer."""

    text: str
    chunking: str | int | None = None  # "token", N tokens per chunk, or "chars:N"; None = the fake's default
    error_after: int | None = None  # send an {"error": ...} line after this many chunks
    error: str = "llama runner process has terminated"
    cut_after: int | None = None  # end the stream after this many chunks, without done:true
    cut_mid_line: bool = False  # with cut_after: also send half a JSON line
    status: int = 200  # an HTTP error status answers {"error": error} before streaming
    done_reason: str | None = None  # default "stop", or "length" when num_predict cut the text
    prompt_eval_count: int | None = None  # default: the prompt's real token count


def call_text(name: str, arguments: str, analysis: str = "Need to call a tool.") -> str:
    """Raw text of a completion that ends in a function call (no `<|call|>`, as Ollama sends it)."""
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant<|channel|>commentary "
        f"to=functions.{name} <|constrain|>json<|message|>{arguments}"
    )


def final_text(answer: str, analysis: str = "Answer now.") -> str:
    """Raw text of a completion that ends in a final answer (no `<|return|>`)."""
    return f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant<|channel|>final<|message|>{answer}"


def _as_completion(item: Any) -> Completion:
    if isinstance(item, Completion):
        return item
    if isinstance(item, str):
        return Completion(text=item)
    known = {f.name for f in fields(Completion)}
    return Completion(**{k: v for k, v in dict(item).items() if k in known})


@dataclass
class Reply:
    status: int
    content_type: str
    lines: list[bytes]  # each written (and flushed) separately
    close_early: bool = False  # drop the connection after the lines (a cut stream)


@dataclass
class FakeOllama:
    completions: list[Any] = field(default_factory=list)
    models: tuple[str, ...] = ("gpt-oss:20b",)
    version: str = "0.12.6"
    chunking: str | int = "token"
    context_length: int = 131072
    requests: list[dict[str, Any]] = field(default_factory=list)  # every call: path + JSON body
    generate_requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script = [_as_completion(c) for c in self.completions]
        self._lock = threading.Lock()

    def add(self, *completions: Any) -> None:
        with self._lock:
            self._script.extend(_as_completion(c) for c in completions)

    @property
    def remaining(self) -> int:
        return len(self._script)

    # -- the protocol -------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> Reply:
        with self._lock:
            self.requests.append({"method": method, "path": path, "body": body})
            if method == "GET" and path == "/api/version":
                return _json(200, {"version": self.version})
            if method == "GET" and path == "/api/tags":
                return _json(200, {"models": [{"name": m, "model": m} for m in self.models]})
            if method == "POST" and path == "/api/show":
                return self._show(body or {})
            if method == "POST" and path == "/api/pull":
                return self._pull(body or {})
            if method == "POST" and path == "/api/generate":
                self.generate_requests.append(body or {})
                return self._generate(body or {})
            return _json(404, {"error": f"{method} {path} not found"})

    def _show(self, body: dict[str, Any]) -> Reply:
        name = body.get("model") or body.get("name")
        if name not in self.models:
            return _json(404, {"error": f"model '{name}' not found"})
        return _json(
            200,
            {
                "modelfile": "FROM gpt-oss",
                "parameters": "temperature 1",
                "template": "<|start|>system<|message|>...",
                "details": {"family": "gptoss"},
                "model_info": {"general.architecture": "gptoss", "gptoss.context_length": self.context_length},
                "capabilities": ["completion", "tools", "thinking"],
            },
        )

    def _pull(self, body: dict[str, Any]) -> Reply:
        name = body.get("model")
        if name not in self.models:
            return _json(500, {"error": "pull model manifest: file does not exist"})
        steps = [{"status": "pulling manifest"}]
        steps += [
            {"status": "pulling 1a2b3c", "digest": "sha256:1a2b3c", "total": 100, "completed": n} for n in (0, 50, 100)
        ]
        steps += [{"status": "verifying sha256 digest"}, {"status": "success"}]
        return Reply(200, "application/x-ndjson", [_line(s) for s in steps])

    def _generate(self, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if model not in self.models:
            return _json(404, {"error": f"model '{model}' not found, try pulling it first"})
        if body.get("raw") and any(k in body for k in ("template", "system", "context")):
            return _json(400, {"error": "raw mode does not support template, system, or context"})
        if not self._script:
            return _json(500, {"error": "fake ollama: no scripted completion left"})
        c = self._script.pop(0)
        if c.status != 200:
            return _json(c.status, {"error": c.error})
        enc = get_encoding()
        ids = enc.encode(c.text, allowed_special="all")
        stops = {enc.encode(t, allowed_special="all")[0] for t in ("<|call|>", "<|return|>")}
        ids = next((ids[:i] for i, t in enumerate(ids) if t in stops), ids)  # raw mode ends there, unsent
        limit = (body.get("options") or {}).get("num_predict")
        reason = c.done_reason or "stop"
        if isinstance(limit, int) and 0 < limit < len(ids):
            ids, reason = ids[:limit], c.done_reason or "length"
        prompt_count = c.prompt_eval_count
        if prompt_count is None:
            prompt_count = len(enc.encode(body.get("prompt", ""), allowed_special="all"))
        done = {
            "model": model,
            "created_at": CREATED_AT,
            "response": "",
            "done": True,
            "done_reason": reason,
            "total_duration": 1_834_000_000,
            "load_duration": 1_200_000,
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": 80_000_000,
            "eval_count": len(ids),
            "eval_duration": 900_000_000,
        }
        pieces = list(_chunks(ids, c.chunking if c.chunking is not None else self.chunking))
        if body.get("stream") is False:
            return _json(200, {**done, "response": "".join(pieces)})
        lines = []
        for i, piece in enumerate(pieces):
            if c.error_after is not None and i == c.error_after:
                lines.append(_line({"error": c.error}))
                return Reply(200, "application/x-ndjson", lines)
            if c.cut_after is not None and i == c.cut_after:
                if c.cut_mid_line:
                    lines.append(b'{"model":"' + str(model).encode() + b'","respon')
                return Reply(200, "application/x-ndjson", lines, close_early=True)
            lines.append(_line({"model": model, "created_at": CREATED_AT, "response": piece, "done": False}))
        if c.error_after is not None:
            lines.append(_line({"error": c.error}))
            return Reply(200, "application/x-ndjson", lines)
        if c.cut_after is not None:
            return Reply(200, "application/x-ndjson", lines, close_early=True)
        lines.append(_line(done))
        return Reply(200, "application/x-ndjson", lines)


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _json(status: int, obj: dict[str, Any]) -> Reply:
    return Reply(status, "application/json; charset=utf-8", [json.dumps(obj).encode()])


def _chunks(ids: list[int], chunking: str | int) -> Iterator[str]:
    """Split a completion into response strings the way a server would stream it."""
    enc = get_encoding()
    if isinstance(chunking, str) and chunking.startswith("chars:"):
        n = int(chunking.split(":", 1)[1])
        text = enc.decode(ids)
        for i in range(0, len(text), n):
            yield text[i : i + n]
        return
    per = 1 if chunking == "token" else int(chunking)
    pending: list[int] = []
    count = 0
    for t in ids:
        pending.append(t)
        count += 1
        if count < per:
            continue
        try:  # like Ollama, hold back a token that ends in half a UTF-8 character
            text = enc.decode_utf8(pending)
        except (RuntimeError, ValueError):  # HarmonyError is a RuntimeError
            continue
        yield text
        pending, count = [], 0
    if pending:
        yield enc.decode(pending)


# -- respx -------------------------------------------------------------------
def _line_stream(reply: Reply) -> Any:
    """An httpx byte stream that hands over one NDJSON line at a time."""
    import httpx

    class LineStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from reply.lines
            if reply.close_early:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

        async def __aiter__(self):  # type: ignore[no-untyped-def,override]
            for line in self:
                yield line

    return LineStream()


@contextlib.contextmanager
def respx_ollama(fake: FakeOllama, base_url: str = "http://127.0.0.1:11434") -> Iterator[Any]:
    """Route every request to `base_url` into `fake` (yields the respx router).

    The catch-all route is named "ollama"; routes added by a test come after it,
    so to intercept a path wrap `router.routes["ollama"].side_effect` instead.
    """
    import httpx
    import respx

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        reply = fake.handle(request.method, request.url.path, body)
        return httpx.Response(reply.status, headers={"content-type": reply.content_type}, stream=_line_stream(reply))

    with respx.mock(base_url=base_url, assert_all_called=False) as router:
        router.route(name="ollama").mock(side_effect=handler)
        yield router


# -- a real HTTP server --------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; the body ends at close
    fake: FakeOllama

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        reply = self.fake.handle(self.command, self.path.split("?", 1)[0], body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if not reply.close_early and len(reply.lines) == 1:
            self.send_header("Content-Length", str(len(reply.lines[0])))
        self.end_headers()
        for line in reply.lines:
            self.wfile.write(line)
            self.wfile.flush()

    do_GET = do_POST = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class LocalServer:
    """An HTTP server on 127.0.0.1 in a background thread; stops on exit or after `lifetime` s."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, lifetime: float = 120.0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.httpd.shutdown)
        self._timer.daemon = True

    def start(self):
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def wait(self) -> None:
        self._thread.join()
        self._timer.cancel()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeOllamaServer(LocalServer):
    """Serve `fake` on 127.0.0.1 in a background thread; stops on exit or after `lifetime` s."""

    def __init__(self, fake: FakeOllama, port: int = 0, lifetime: float = 120.0) -> None:
        super().__init__(type("Handler", (_Handler,), {"fake": fake}), port, lifetime)


def load_script(path: str) -> FakeOllama:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        data = {"completions": data}
    kwargs = {k: data[k] for k in ("models", "version", "chunking", "context_length") if k in data}
    if "models" in kwargs:
        kwargs["models"] = tuple(kwargs["models"])
    return FakeOllama(completions=list(data.get("completions", [])), **kwargs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--script", required=True, help="JSON script of completions")
    ap.add_argument("--lifetime", type=float, default=300.0, help="stop after this many seconds")
    ap.add_argument("--record", help="append every request as one JSON line to this file")
    args = ap.parse_args(argv)
    fake = load_script(args.script)
    if args.record:
        original = fake.handle

        def recording(method: str, path: str, body: dict[str, Any] | None) -> Reply:
            with open(args.record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"method": method, "path": path, "body": body}) + "\n")
            return original(method, path, body)

        fake.handle = recording  # type: ignore[method-assign]
    server = FakeOllamaServer(fake, port=args.port, lifetime=args.lifetime).start()
    print(server.url, flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
