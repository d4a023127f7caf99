"""The attack suite: every test here is marked `security`; after the run no sandbox container or
volume of the project, labelled with this run's id or owned by this process, may be left."""

from __future__ import annotations

import pytest
from sandbox_fixtures import (  # noqa: F401
    docker_client,
    docker_problem,
    make_sandbox,
    own_resources,
    run_resources,
    sandbox_image,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/security/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.security)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    yield
    if docker_problem() is not None:
        return  # no daemon: the Docker attacks failed or skipped on their own
    import docker

    client = docker.from_env()
    try:
        leftovers = sorted(set(run_resources(client)) | set(own_resources(client)))
    finally:
        client.close()
    assert leftovers == [], f"the attack suite left sandbox resources behind: {leftovers}"
