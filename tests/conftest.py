"""Shared test setup: Docker and llama-server availability for marked tests; a no-network fixture."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "security: an attack on the sandbox, the browser or sessions (`pytest -m security`)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Marked tests skip without Docker / llama-server, or fail when CI requires them.

    `docker`: OSS_AGENT_REQUIRE_DOCKER=1; `llamacpp`: OSS_AGENT_REQUIRE_LLAMACPP=1; `mcp`: OSS_AGENT_REQUIRE_MCP=1.
    """
    if item.get_closest_marker("docker"):
        from sandbox_fixtures import require_docker

        require_docker()
    if item.get_closest_marker("llamacpp"):
        from llama_server import require_binary

        require_binary()
    if item.get_closest_marker("mcp"):
        from mcp_fixtures import require_mcp

        require_mcp()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any name lookup or connection: for tests that must stay off the network entirely."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("this test tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def tools_file(tmp_path):
    """The CLI tests' `@tool` file (`get_weather`, `delete_file`), written where `-t` can load it."""
    from cli_helpers import WEATHER_TOOLS

    path = tmp_path / "weather_tools.py"
    path.write_text(WEATHER_TOOLS, encoding="utf-8")
    return path
