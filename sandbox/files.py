"""File transfer between the host and the sandbox's /mnt/data, inside /mnt/data only.

Names are checked, never changed: a name with a NUL or another control
character, a separator where none may be, ``.`` or ``..`` is refused. Reading
refuses a path any component of which is a symbolic link (Docker's archive API
would follow it, with root's rights, anywhere in the container), and writing on
the host replaces whatever is at the target (a symbolic link included) instead
of writing through it.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any

import docker.utils

from .errors import SandboxError

DATA_DIR = "/mnt/data"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_NAME_BYTES = 255


def upload_name(name: str) -> str:
    """``name`` if it can be a file directly in /mnt/data exactly as written; else `SandboxError`."""
    if not name or "/" in name or name in (".", "..") or _CONTROL.search(name):
        raise SandboxError(f"invalid file name {name!r}: use a plain name without '/' or control characters")
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        raise SandboxError(f"invalid file name {name[:40]!r}...: longer than {_MAX_NAME_BYTES} bytes")
    return name


def data_path(name: str) -> str:
    """The path of ``name`` relative to /mnt/data (given relative to it, or absolute under it)."""
    if _CONTROL.search(name):
        raise SandboxError(f"invalid file name {name!r}: control characters are not allowed")
    path = PurePosixPath(name)
    if path.is_absolute():
        try:
            path = path.relative_to(DATA_DIR)
        except ValueError:
            raise SandboxError(f"only files under {DATA_DIR} can be downloaded, not {name!r}") from None
    if not path.parts or ".." in path.parts:
        raise SandboxError(f"invalid file name {name!r}")
    return str(path)


def tar_one(handle: IO[bytes], name: str, size: int, ids: tuple[int, int]) -> bytes:
    """A tar archive holding one regular file ``name`` with the bytes of ``handle``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, int(time.time())
        info.uid, info.gid = ids
        tar.addfile(info, handle)
    return buffer.getvalue()


def refuse_links(api: Any, container: str, relative: str) -> None:
    """`SandboxError` if any component of /mnt/data/``relative`` is a symbolic link."""
    parts = PurePosixPath(relative).parts
    for depth in range(1, len(parts) + 1):
        path = f"{DATA_DIR}/{'/'.join(parts[:depth])}"
        response = api.head(api._url("/containers/{0}/archive", container), params={"path": path})
        if response.status_code == 404:
            raise FileNotFoundError(path)
        if response.status_code >= 400:
            raise SandboxError(f"cannot inspect {path} in the sandbox (HTTP {response.status_code})")
        info = docker.utils.decode_json_header(response.headers.get("X-Docker-Container-Path-Stat", ""))
        mode = int(info.get("mode", 0)) if isinstance(info, dict) else 0
        if info.get("linkTarget") or mode & (1 << 27):  # Go's os.ModeSymlink
            raise SandboxError(f"{path} is a symbolic link; only files inside {DATA_DIR} can be downloaded")


def untar_one(data: bytes, path: str) -> bytes:
    """The bytes of the single regular file in a tar archive from Docker's archive API."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        if member is None or not member.isreg():
            raise SandboxError(f"{path} is not a regular file")
        handle = tar.extractfile(member)
        return handle.read() if handle else b""


def write_replacing(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a new file renamed over it (never through a link)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
