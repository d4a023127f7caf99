"""Shared test setup: Docker availability for tests marked `docker`; a no-network fixture."""

from __future__ import annotations

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `docker` skip without a daemon, or fail when OSS_AGENT_REQUIRE_DOCKER=1 (CI)."""
    if item.get_closest_marker("docker"):
        from sandbox_fixtures import require_docker

        require_docker()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any name lookup or connection: for tests that must stay off the network entirely."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this test tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
