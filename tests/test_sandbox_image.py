"""The offline image recipe (package resolution needs apt; building is covered by the fixtures)."""

from __future__ import annotations

import shutil

import pytest

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
