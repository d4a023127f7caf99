"""What `-t python` users read when the sandbox image is missing, and `python -m sandbox.image --force`."""

from __future__ import annotations

import docker.errors
import pytest

from agent.errors import SandboxUnavailableError
from sandbox import image as image_module
from sandbox.pull import ensure_image

DENIED = (
    "pull access denied for oss-agent-sandbox, repository does not exist or may require 'docker login': "
    "denied: requested access to the resource is denied; " + "and a long tail of detail " * 20
)


class _Api:
    """The part of docker's low-level API the image code uses, with images kept in a dict."""

    def __init__(self) -> None:
        self.images: dict[str, dict] = {}  # id -> {"Id", "RepoTags"}
        self.removed: list[str] = []
        self.builds = 0

    def _find(self, name: str) -> dict:
        for image in self.images.values():
            if name == image["Id"] or name in image["RepoTags"]:
                return image
        raise docker.errors.ImageNotFound(f"No such image: {name}")

    def inspect_image(self, name: str) -> dict:
        return {**self._find(name), "Size": 50e6}

    def pull(self, name: str, stream: bool = False, decode: bool = False):
        response = type("Response", (), {"status_code": 404, "reason": "Not Found", "url": "http+docker://x"})()
        raise docker.errors.APIError(
            "404 Client Error for http+docker://localhost/v1.47/images/create", response=response, explanation=DENIED
        )

    def _retag(self, image_id: str, name: str) -> None:
        for image in self.images.values():
            if name in image["RepoTags"]:
                image["RepoTags"].remove(name)
        self.images.setdefault(image_id, {"Id": image_id, "RepoTags": []})["RepoTags"].append(name)

    def import_image_from_file(self, path: str, repository: str, tag: str, changes: list[str]) -> None:
        self._retag(f"sha256:base{self.builds}", f"{repository}:{tag}")

    def create_container(self, base: str, *args: object, **kwargs: object) -> str:
        return "container"

    def create_host_config(self, **kwargs: object) -> dict:
        return {}

    def start(self, container: str) -> None:
        pass

    def wait(self, container: str, timeout: int) -> dict:
        return {"StatusCode": 0}

    def commit(self, container: str, repository: str, tag: str, changes: list[str]) -> None:
        self.builds += 1
        self._retag(f"sha256:build{self.builds}", f"{repository}:{tag}")

    def tag(self, image: str, repository: str, tag: str) -> None:
        self._retag(self._find(image)["Id"], f"{repository}:{tag}")

    def remove_container(self, container: str, force: bool = False) -> None:
        pass

    def remove_image(self, name: str) -> None:
        image = self._find(name)
        if image["RepoTags"] and name in image["RepoTags"]:
            image["RepoTags"].remove(name)
            if image["RepoTags"]:
                return
        del self.images[image["Id"]]
        self.removed.append(image["Id"])


class _Client:
    def __init__(self) -> None:
        self.api = _Api()


def test_a_failed_pull_is_one_whole_sentence_that_names_the_cli_setting():
    with pytest.raises(SandboxUnavailableError) as caught:
        ensure_image(_Client(), "oss-agent-sandbox:missing", quiet=True)
    message = str(caught.value)
    assert "\n" not in message and "http+docker" not in message
    assert "(pull access denied for oss-agent-sandbox, repository does not exist" in message
    assert " …)" in message and "detai)" not in message  # shortened at a word boundary
    assert message.endswith(
        "the sandbox then finds it by itself (or name one: OSS_AGENT_SANDBOX_IMAGE, PythonTool(image=TAG))."
    )


def test_a_forced_rebuild_leaves_no_dangling_image(monkeypatch):
    monkeypatch.setattr(image_module, "resolve_packages", lambda roots: ["python3", "python3.11"])
    monkeypatch.setattr(image_module, "_download", lambda packages, dest, quiet: [])
    monkeypatch.setattr(image_module, "_make_rootfs", lambda debs, root, python: None)
    monkeypatch.setattr(image_module, "_run", lambda cmd, cwd=None: "")
    client = _Client()
    tag = image_module.build_image("my-sandbox:1", client=client, quiet=True)
    first = client.api.inspect_image(tag)["Id"]
    assert image_module.build_image("my-sandbox:1", client=client, quiet=True) == tag  # present: nothing built
    assert client.api.builds == 1
    image_module.build_image("my-sandbox:1", client=client, quiet=True, force=True)
    assert client.api.builds == 2 and client.api.inspect_image(tag)["Id"] != first
    assert first in client.api.removed
    assert all(image["RepoTags"] for image in client.api.images.values())  # nothing left as <none>
