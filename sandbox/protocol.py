"""Host side of the framing spoken with the in-container REPL.

Two layers: Docker multiplexes the attached stdout/stderr into chunks, each with
an 8-byte header (stream id, size); inside stdout, every message is a 4-byte
big-endian length followed by UTF-8 JSON. Everything that comes out of the
container is untrusted: sizes are checked before anything is buffered.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from typing import Any

LENGTH = struct.Struct(">I")
MUX_HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2
RECV_SIZE = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: object) -> str:
    """A string from the sandbox as valid Unicode: lone surrogates become U+FFFD (None becomes "")."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return _SURROGATE.sub("\ufffd", text)


class ProtocolError(Exception):
    """The container sent something that breaks the protocol."""


class ChannelClosed(Exception):
    """The container's end of the stream is gone (it exited or was killed)."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame: length prefix plus compact JSON."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return LENGTH.pack(len(body)) + body


class FrameReader:
    """Reads messages from an attached container socket with a deadline.

    At most ``max_frame`` bytes of one message are ever buffered; a larger
    length prefix raises `ProtocolError` before any allocation. Container
    stderr is kept as a short tail for diagnostics and never parsed.
    """

    def __init__(self, sock: socket.socket, max_frame: int, stderr_keep: int = 8192) -> None:
        self._sock = sock
        self._max_frame = max_frame
        self._stderr_keep = stderr_keep
        self._raw = bytearray()  # bytes received but not yet demultiplexed
        self._stream = 0  # id of the mux chunk being read
        self._remaining = 0  # bytes of that chunk still to come
        self._payload = bytearray()  # stdout bytes not yet decoded into messages
        self.stderr_tail = bytearray()

    def _demux(self) -> None:
        while self._raw:
            if self._remaining == 0:
                if len(self._raw) < MUX_HEADER.size:
                    return
                self._stream, self._remaining = MUX_HEADER.unpack_from(self._raw)
                del self._raw[: MUX_HEADER.size]
                continue
            take = min(self._remaining, len(self._raw))
            chunk = bytes(self._raw[:take])
            del self._raw[:take]
            self._remaining -= take
            if self._stream == STDOUT:
                self._payload += chunk
            elif self._stream == STDERR:
                self.stderr_tail += chunk
                del self.stderr_tail[: max(0, len(self.stderr_tail) - self._stderr_keep)]
            else:
                raise ProtocolError(f"unknown stream id {self._stream}")

    def _next_message(self) -> dict[str, Any] | None:
        if len(self._payload) < LENGTH.size:
            return None
        (size,) = LENGTH.unpack_from(self._payload)
        if size > self._max_frame:
            raise ProtocolError(f"frame of {size} bytes exceeds the {self._max_frame}-byte limit")
        if len(self._payload) < LENGTH.size + size:
            return None
        body = bytes(self._payload[LENGTH.size : LENGTH.size + size])
        del self._payload[: LENGTH.size + size]
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"undecodable frame: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("frame is not a JSON object")
        return message

    def pending(self) -> bool:
        """True if bytes arrived that no message has consumed yet."""
        return bool(self._raw or self._payload)

    def read_message(self, deadline: float) -> dict[str, Any]:
        """The next message; `TimeoutError` at ``deadline`` (a `time.monotonic` value)."""
        while True:
            message = self._next_message()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message before the deadline")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(RECV_SIZE)
            except TimeoutError:
                raise TimeoutError("no message before the deadline") from None
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            if not data:
                raise ChannelClosed("end of stream")
            self._raw += data
            self._demux()

    def closed(self) -> bool:
        """Non-blocking check: has the other end gone away (EOF or error)?"""
        try:
            self._sock.settimeout(0)
            data = self._sock.recv(RECV_SIZE)
        except (TimeoutError, BlockingIOError, InterruptedError):
            return False
        except ValueError:  # sockets that cannot be polled this way (TLS)
            return False
        except OSError:
            return True
        if not data:
            return True
        self._raw += data
        self._demux()
        return False
