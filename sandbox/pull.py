"""Finding the sandbox image locally, or pulling it with a progress bar."""

from __future__ import annotations

import sys

import docker
import docker.errors

from .docker_client import CONNECTION_ERRORS
from .errors import SandboxError, SandboxUnavailableError

BUILD_HINT = (
    "Build one without a registry with `python -m sandbox.image` (a Debian/Ubuntu host with apt), "
    "the sandbox then finds it by itself (or name one: OSS_AGENT_SANDBOX_IMAGE, PythonTool(image=TAG))."
)
REASON_CHARS = 300


def _reason(exc: BaseException) -> str:
    """The first line of an error, shortened at a word boundary (never mid-word), without a trailing period."""
    raw = str(getattr(exc, "explanation", None) or exc).strip()  # Docker's own words, without the request URL
    text = raw.splitlines()[0].strip() if raw else type(exc).__name__
    if len(text) > REASON_CHARS:
        text = text[:REASON_CHARS].rsplit(" ", 1)[0] + " …"
    return text.rstrip(".")


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def ensure_image(client: docker.DockerClient, name: str, pull: bool = True, quiet: bool = False) -> str:
    """The id of image ``name``, pulling it (with a progress bar) when it is missing."""
    try:
        return client.api.inspect_image(name)["Id"]
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise SandboxUnavailableError(f"cannot inspect sandbox image {name!r}: {exc.explanation}") from None
    if not pull:
        raise SandboxUnavailableError(f"sandbox image {name!r} is not available locally. {BUILD_HINT}")
    try:
        _pull(client, name, quiet)
        return client.api.inspect_image(name)["Id"]
    except (*CONNECTION_ERRORS, docker.errors.DockerException, SandboxError) as exc:
        reason = _reason(exc)
    raise SandboxUnavailableError(
        f"sandbox image {name!r} is not available locally and could not be pulled ({reason}). {BUILD_HINT}"
    )


def _pull(client: docker.DockerClient, name: str, quiet: bool) -> None:
    _log(f"Pulling sandbox image {name} ...", quiet)
    layers: dict[str, tuple[int, int]] = {}
    progress = None
    if not quiet and sys.stderr.isatty():
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        progress = Progress(TextColumn(f"pull {name}"), BarColumn(), DownloadColumn(), transient=True)
        progress.start()
        task = progress.add_task("pull", total=None)
    try:
        for event in client.api.pull(name, stream=True, decode=True):
            if "error" in event:
                raise SandboxError(str(event["error"]))
            detail = event.get("progressDetail") or {}
            if event.get("id") and detail.get("total"):
                layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                if progress is not None:
                    progress.update(
                        task, completed=sum(c for c, _ in layers.values()), total=sum(t for _, t in layers.values())
                    )
    finally:
        if progress is not None:
            progress.stop()
