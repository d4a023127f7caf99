"""Framing between host and sandbox, tested over a local socket pair (no Docker)."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from sandbox.protocol import ChannelClosed, FrameReader, ProtocolError, encode


def mux(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


@pytest.fixture
def pair():
    host, container = socket.socketpair()
    yield host, container
    host.close()
    container.close()


def test_messages_split_across_chunks_and_streams(pair):
    host, container = pair
    reader = FrameReader(host, max_frame=1024)
    frame = encode({"type": "result", "id": "a", "stdout": "é" * 10}) + encode({"type": "ready"})
    container.sendall(mux(2, b"warning\n") + mux(1, frame[:3]) + mux(1, frame[3:20]) + mux(1, frame[20:]))
    assert reader.read_message(time.monotonic() + 2)["stdout"] == "é" * 10
    assert reader.read_message(time.monotonic() + 2) == {"type": "ready"}
    assert bytes(reader.stderr_tail) == b"warning\n"


def test_oversized_frame_is_refused_before_buffering(pair):
    host, container = pair
    reader = FrameReader(host, max_frame=1024)
    container.sendall(mux(1, struct.pack(">I", 2**32 - 1) + b"x" * 100))
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.read_message(time.monotonic() + 2)


def test_garbage_and_non_objects_are_protocol_errors(pair):
    host, container = pair
    reader = FrameReader(host, max_frame=1024)
    container.sendall(mux(1, struct.pack(">I", 3) + b"\xff\xfe!"))
    with pytest.raises(ProtocolError):
        reader.read_message(time.monotonic() + 2)
    container.sendall(mux(1, struct.pack(">I", 2) + b"[]"))
    with pytest.raises(ProtocolError):
        reader.read_message(time.monotonic() + 2)
    container.sendall(mux(7, b"?"))
    with pytest.raises(ProtocolError):
        reader.read_message(time.monotonic() + 2)


def test_deadline_and_end_of_stream(pair):
    host, container = pair
    reader = FrameReader(host, max_frame=1024)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        reader.read_message(started + 0.2)
    assert time.monotonic() - started < 1
    assert not reader.closed()
    container.shutdown(socket.SHUT_WR)
    assert reader.closed()
    with pytest.raises(ChannelClosed):
        reader.read_message(time.monotonic() + 1)


def test_stderr_tail_is_bounded(pair):
    host, container = pair
    reader = FrameReader(host, max_frame=1024, stderr_keep=100)
    container.sendall(mux(2, b"e" * 5000) + mux(1, encode({"type": "ready"})))
    reader.read_message(time.monotonic() + 2)
    assert len(reader.stderr_tail) == 100
