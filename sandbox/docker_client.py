"""Connecting to Docker, labelling sandbox resources, and sweeping orphans."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import docker
import docker.errors
import requests

from .errors import SandboxUnavailableError

LABEL = "oss-agent.sandbox"
LABEL_SESSION = "oss-agent.session"
LABEL_HOST = "oss-agent.owner-host"
LABEL_PID = "oss-agent.owner-pid"
LABEL_CREATED = "oss-agent.created"

# What a dead or unreachable daemon looks like through docker-py.
CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    socket.timeout,
)

HINT = (
    "Start Docker (e.g. `sudo systemctl start docker`, or run `dockerd`) and check that "
    "this user can reach it (`docker info`)."
)


def connect(connect_timeout: float = 5.0, timeout: float = 60.0, client: Any = None) -> docker.DockerClient:
    """A client for the daemon in the environment (DOCKER_HOST etc.), checked with a ping.

    Raises `SandboxUnavailableError` within about ``connect_timeout`` seconds when
    no daemon answers.
    """
    try:
        if client is None:
            client = docker.from_env(timeout=connect_timeout)
        client.api.timeout = connect_timeout
        client.ping()
    except (docker.errors.DockerException, *CONNECTION_ERRORS) as exc:
        raise SandboxUnavailableError(f"Docker is not available ({_short(exc)}). {HINT}") from None
    client.api.timeout = timeout
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def labels(session: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Labels that identify a sandbox's container and volume and their owner process."""
    return {
        **(extra or {}),
        LABEL: "1",
        LABEL_SESSION: session,
        LABEL_HOST: socket.gethostname(),
        LABEL_PID: str(os.getpid()),
        LABEL_CREATED: str(int(time.time())),
    }


def _owner_gone(item_labels: dict[str, str], max_age: float | None) -> bool:
    if max_age is not None:
        try:
            if time.time() - float(item_labels.get(LABEL_CREATED, "")) > max_age:
                return True
        except ValueError:
            pass
    if item_labels.get(LABEL_HOST) != socket.gethostname():
        return False  # another machine's sandbox: cannot tell
    try:
        pid = int(item_labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_orphans(client: docker.DockerClient, max_age: float | None = None) -> int:
    """Remove sandbox containers and volumes whose owner process is gone.

    Only resources labelled by this machine are judged by owner pid; with
    ``max_age`` (seconds) anything older is removed too. Returns how many
    resources were removed.
    """
    removed = 0
    try:
        containers = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    except docker.errors.APIError:
        return 0
    for item in containers:
        if _owner_gone(item.get("Labels") or {}, max_age):
            try:
                client.api.remove_container(item["Id"], force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                continue
    try:
        volumes = client.api.volumes(filters={"label": f"{LABEL}=1"}).get("Volumes") or []
    except docker.errors.APIError:
        return removed
    for item in volumes:
        if _owner_gone(item.get("Labels") or {}, max_age):
            try:
                client.api.remove_volume(item["Name"], force=True)
                removed += 1
            except docker.errors.APIError:
                pass  # still in use, or already gone
    return removed
