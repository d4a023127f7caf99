"""The offline image recipe (package resolution needs apt; building is covered by the fixtures)."""

from __future__ import annotations

import shutil

import pytest
from sandbox_fixtures import docker_client, sandbox_image  # noqa: F401  (fixtures)

from sandbox.image import EXCLUDED, ROOTS, recipe_tag, resolve_packages


def test_recipe_tag_is_a_stable_content_hash():
    assert recipe_tag() == recipe_tag()
    assert recipe_tag(pip_packages=["numpy"]) != recipe_tag()
    assert recipe_tag().startswith("oss-agent-sandbox:")


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs a Debian/Ubuntu host with apt")
def test_package_closure_has_python_and_no_package_manager():
    packages = resolve_packages(ROOTS)
    assert "python3" in packages and "libc6" in packages
    assert any(p.startswith("python3.") and "-" not in p for p in packages)
    assert not set(packages) & EXCLUDED
    assert len(packages) < 60


@pytest.mark.docker
def test_a_built_image_is_found_without_being_named(sandbox_image, docker_client, monkeypatch, tmp_path):  # noqa: F811
    """After `python -m sandbox.image`, the sandbox and doctor use the image with no tag exported."""
    from cli_helpers import cli_env, run_cli
    from sandbox_fixtures import RUN_ID, RUN_LABEL

    from sandbox import DockerSandbox
    from sandbox.image import BUILD_LABEL, find_built_image

    found = find_built_image(docker_client)
    assert found is not None and BUILD_LABEL in docker_client.api.inspect_image(found)["Config"]["Labels"]
    monkeypatch.delenv("OSS_AGENT_SANDBOX_IMAGE", raising=False)
    box = DockerSandbox(timeout=20, labels={RUN_LABEL: RUN_ID}, pull=False)
    try:
        assert box.run("6 * 7").result == "42"
        assert box.image == found
    finally:
        box.close()
    doctor = run_cli("doctor", "-t", "python", env=cli_env(tmp_path, "http://127.0.0.1:9"), timeout=120)
    assert f"sandbox image: {found} is present" in doctor.stdout, doctor.stdout
