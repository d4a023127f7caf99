"""Sandbox options and the Docker container settings they produce.

Every default is the locked-down choice; each option loosens one thing:

==================  ==================  =============================================
option              default             loosen with
==================  ==================  =============================================
network             False (none)        True (Docker's default bridge) or a name
read_only           True                False: writable root filesystem
tmp_size            "64m"               a size; /tmp is a noexec tmpfs
tmp_exec            False               True: allow executing files from /tmp
data_size           "64m"               size of the /mnt/data tmpfs volume
user                "65534:65534"       "0:0" runs as root (never empty)
cap_add             ()                  capabilities to give back (all are dropped)
no_new_privileges   True                False
memory              "512m"              a size, or None for no limit
memory_swap         None (= memory)     a larger size allows swap
cpus                1.0                 None for no limit
pids_limit          128                 None for no limit
fsize               "16m"               None: no file-size limit
nofile              256                 None: the daemon's default
ipc_mode            "private"           "shareable", "host", ...
seccomp             "strict"            "default" (Docker's profile), "unconfined",
                                        or a profile as a dict
runtime             None                e.g. "runsc" (gVisor) for stronger isolation
kill_strays         True                False keeps background processes and threads
                                        between cells
max_code            "16m"               the largest cell accepted
==================  ==================  =============================================
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

from . import seccomp
from .errors import ConfigurationError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

ENVIRONMENT = {
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


def parse_size(value: int | str | None, what: str) -> int | None:
    """Bytes from an int or a string such as "512m" or "1.5g"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ConfigurationError(f"{what}: cannot read size {value!r} (use e.g. '512m')")
        number = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if number <= 0:
        raise ConfigurationError(f"{what}: must be positive, got {value!r}")
    return number


@dataclass
class SandboxConfig:
    """Options of a `DockerSandbox` (see the module docstring for the table)."""

    network: bool | str = False
    read_only: bool = True
    tmp_size: int | str = "64m"
    tmp_exec: bool = False
    data_size: int | str = "64m"
    user: str = "65534:65534"
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    memory: int | str | None = "512m"
    memory_swap: int | str | None = None
    cpus: float | None = 1.0
    pids_limit: int | None = 128
    fsize: int | str | None = "16m"
    nofile: int | None = 256
    ipc_mode: str = "private"
    seccomp: str | dict = "strict"
    runtime: str | None = None
    kill_strays: bool = True
    interrupt_grace: float = 2.0
    startup_timeout: float = 30.0
    output_limit: int = 64 * 1024
    max_frame: int = 8 * 1024 * 1024
    max_download: int | str = "64m"
    max_code: int | str = "16m"
    pull: bool = True
    python: str = "python3"
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    docker_timeout: float = 60.0
    connect_timeout: float = 5.0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SandboxConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(f"unknown sandbox option(s): {', '.join(unknown)}")
        config = cls(**options)
        config.validate()
        return config

    def validate(self) -> None:
        if not isinstance(self.user, str) or not self.user.strip():
            raise ConfigurationError("sandbox user must be set (e.g. '65534:65534'); it never defaults to root")
        for name in ("tmp_size", "data_size", "memory", "memory_swap", "fsize", "max_download", "max_code"):
            parse_size(getattr(self, name), name)
        memory = parse_size(self.memory, "memory")
        if memory is not None and memory < 6 * 1024**2:
            raise ConfigurationError("memory must be at least 6m (Docker's minimum)")
        swap = parse_size(self.memory_swap, "memory_swap")
        if swap is not None and (memory is None or swap < memory):
            raise ConfigurationError("memory_swap needs a memory limit and must be >= memory")
        if self.cpus is not None and self.cpus <= 0:
            raise ConfigurationError("cpus must be positive or None")
        if self.pids_limit is not None and self.pids_limit < 8:
            raise ConfigurationError("pids_limit must be at least 8 or None")
        if isinstance(self.seccomp, str) and self.seccomp not in ("strict", "default", "unconfined"):
            raise ConfigurationError("seccomp must be 'strict', 'default', 'unconfined' or a profile dict")
        if self.output_limit < 1024 or self.max_frame < 16 * self.output_limit:
            raise ConfigurationError("output_limit must be >= 1024 and max_frame >= 16 * output_limit")
        if (parse_size(self.max_code, "max_code") or 0) > 48 * 1024**2:
            raise ConfigurationError("max_code must be at most 48m (the interpreter reads at most 64 MiB)")
        if self.interrupt_grace < 0 or self.startup_timeout <= 0:
            raise ConfigurationError("interrupt_grace and startup_timeout must be positive")

    def uid_gid(self) -> tuple[int, int] | None:
        """Numeric (uid, gid) of `user`, or None when it is a name."""
        parts = self.user.split(":")
        try:
            uid = int(parts[0])
            gid = int(parts[1]) if len(parts) > 1 else uid
        except ValueError:
            return None
        return uid, gid

    def volume_options(self) -> dict[str, str]:
        """Driver options of the tmpfs volume mounted at /mnt/data."""
        size = parse_size(self.data_size, "data_size")
        opts = [f"size={size}", "noexec", "nosuid", "nodev"]
        ids = self.uid_gid()
        opts += [f"uid={ids[0]}", f"gid={ids[1]}", "mode=0700"] if ids else ["mode=1777"]
        return {"type": "tmpfs", "device": "tmpfs", "o": ",".join(opts)}

    def container_options(self) -> dict[str, Any]:
        """Keyword arguments for docker-py's ``containers.create`` (hardening part)."""
        tmp = f"rw,size={parse_size(self.tmp_size, 'tmp_size')},mode=1777,nosuid,nodev"
        if not self.tmp_exec:
            tmp += ",noexec"
        security = []
        if self.no_new_privileges:
            security.append("no-new-privileges")
        if self.seccomp == "strict":
            security.append("seccomp=" + seccomp.profile_json())
        elif self.seccomp == "unconfined":
            security.append("seccomp=unconfined")
        elif isinstance(self.seccomp, dict):
            security.append("seccomp=" + json.dumps(self.seccomp, separators=(",", ":")))
        options: dict[str, Any] = {
            "user": self.user,
            "init": True,
            "read_only": self.read_only,
            "tmpfs": {"/tmp": tmp},
            "cap_drop": ["ALL"],
            "cap_add": list(self.cap_add) or None,
            "security_opt": security,
            "ipc_mode": self.ipc_mode,
            "working_dir": "/tmp",
            "environment": {**ENVIRONMENT, **self.environment},
        }
        if self.network is False:
            options["network_mode"] = "none"
        elif isinstance(self.network, str):
            options["network_mode"] = self.network
        memory = parse_size(self.memory, "memory")
        if memory is not None:
            options["mem_limit"] = memory
            options["memswap_limit"] = parse_size(self.memory_swap, "memory_swap") or memory
        if self.cpus is not None:
            options["nano_cpus"] = int(self.cpus * 1e9)
        if self.pids_limit is not None:
            options["pids_limit"] = self.pids_limit
        ulimits = []
        fsize = parse_size(self.fsize, "fsize")
        if fsize is not None:
            ulimits.append({"Name": "fsize", "Soft": fsize, "Hard": fsize})
        if self.nofile is not None:
            ulimits.append({"Name": "nofile", "Soft": self.nofile, "Hard": self.nofile})
        if ulimits:
            options["ulimits"] = ulimits
        if self.runtime:
            options["runtime"] = self.runtime
        return options

    def server_options(self) -> dict[str, Any]:
        """Options handed to the in-container REPL."""
        return {"output_limit": self.output_limit, "kill_strays": self.kill_strays}
