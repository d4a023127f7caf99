"""Fixtures shared by the sandbox tests (import them into each test module).

Docker tests skip when no daemon answers, unless OSS_AGENT_REQUIRE_DOCKER=1,
which turns the skip into a failure. The image comes from
OSS_AGENT_SANDBOX_IMAGE, else it is built once with `sandbox.image`.
"""

from __future__ import annotations

import functools
import os
import uuid

import pytest

REQUIRE_ENV = "OSS_AGENT_REQUIRE_DOCKER"
RUN_LABEL = "oss-agent.test-run"
RUN_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # labels every sandbox this test run creates


@functools.lru_cache(maxsize=1)
def docker_problem() -> str | None:
    """None when a Docker daemon answers, else why not."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means: no usable daemon
        first = (str(exc).splitlines() or [""])[0][:200]
        return f"no Docker daemon answers ({type(exc).__name__}: {first})"
    return None


def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{problem}, and {REQUIRE_ENV}=1 requires Docker", pytrace=False)
    pytest.skip(problem)


@functools.lru_cache(maxsize=1)
def _test_image() -> str:
    tag = os.environ.get("OSS_AGENT_SANDBOX_IMAGE")
    if tag:
        return tag
    from sandbox.image import build_image

    return build_image(quiet=True)


def own_resources(client, label: str | None = None) -> list[str]:
    """Names of sandbox containers and volumes created by this test process (or carrying ``label``)."""
    from sandbox.docker_client import LABEL, LABEL_PID

    mine = label or f"{LABEL_PID}={os.getpid()}"
    filters = {"label": [f"{LABEL}=1", mine]}
    names = [c["Names"][0] for c in client.api.containers(all=True, filters=filters)]
    names += [v["Name"] for v in client.api.volumes(filters=filters).get("Volumes") or []]
    return names


def run_resources(client) -> list[str]:
    """Names of sandbox containers and volumes labelled with this test run's id."""
    return own_resources(client, f"{RUN_LABEL}={RUN_ID}")


@pytest.fixture(scope="session")
def docker_client():
    require_docker()
    import docker

    client = docker.from_env()
    yield client
    leftovers = own_resources(client)
    client.close()
    assert not leftovers, f"sandbox resources left behind: {leftovers}"


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    return _test_image()


@pytest.fixture
def make_sandbox(sandbox_image):
    """Factory for sandboxes that are closed after the test."""
    from sandbox import DockerSandbox

    created = []

    def factory(**options):
        options.setdefault("image", sandbox_image)
        options.setdefault("timeout", 20)
        options.setdefault("labels", {RUN_LABEL: RUN_ID})
        box = DockerSandbox(**options)
        created.append(box)
        return box

    yield factory
    for box in created:
        box.close()


@pytest.fixture
def sandbox(make_sandbox):
    """A started sandbox with the default (locked-down) options."""
    return make_sandbox().start()


@pytest.fixture(scope="module")
def shared_sandbox(sandbox_image):
    """One started sandbox for a module's read-only checks."""
    from sandbox import DockerSandbox

    box = DockerSandbox(sandbox_image, timeout=20, labels={RUN_LABEL: RUN_ID}).start()
    yield box
    box.close()


SLOW_CELL = "open('/mnt/data/started', 'w').write('1')\nimport time\ntime.sleep(60)"


def wait_for_file(client, container: str, path: str) -> None:
    """Return once ``path`` exists in ``container`` (asks Docker; gives up after 30 s)."""
    import time

    import docker

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.api.get_archive(container, path)[0].close()
            return
        except docker.errors.APIError:  # not there yet
            continue
    raise AssertionError(f"{path} never appeared")
