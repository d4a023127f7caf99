"""Shared test setup: Docker availability for tests marked `docker`."""

from __future__ import annotations

import functools
import os

import pytest


@functools.cache
def docker_available() -> str | None:
    """None when a Docker daemon answers, else the reason it does not."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return None
    except Exception as exc:  # no socket, daemon down, permission denied
        return f"no Docker daemon answers ({type(exc).__name__}: {exc})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_items = [item for item in items if item.get_closest_marker("docker")]
    if not docker_items:
        return
    reason = docker_available()
    if reason is None:
        return
    if os.environ.get("OSS_AGENT_REQUIRE_DOCKER") == "1":
        fail = pytest.mark.usefixtures("_docker_required")
        for item in docker_items:
            item.add_marker(fail)
    else:
        for item in docker_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def _docker_required() -> None:
    pytest.fail(f"Docker is required here (OSS_AGENT_REQUIRE_DOCKER=1): {docker_available()}")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any name lookup or connection: for tests that must stay off the network entirely."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this test tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
