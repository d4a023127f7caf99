"""Building the sandbox image without a container registry.

The builder takes Debian's own packages (``apt-get download``), unpacks them
into a root filesystem with no shell and no package manager, imports it into
Docker, and precompiles the standard library. It needs a Debian or Ubuntu host
with apt and a reachable package mirror, but no container registry.

Command line: ``python -m sandbox.image [--pip PKG ...] [--force] [--tag NAME]``
builds (or finds) the image and prints its tag on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import docker
import docker.errors

from .docker_client import connect
from .errors import SandboxError

REPOSITORY = "oss-agent-sandbox"
RECIPE_VERSION = "1"
ROOTS = ("python3", "ca-certificates", "tzdata", "netbase")
WHEEL_ROOTS = ("libstdc++6", "libgcc-s1")
# Packages that only matter to a package manager or maintainer scripts.
EXCLUDED = frozenset(
    {
        "debconf",
        "cdebconf",
        "debconf-2.0",
        "dpkg",
        "perl",
        "perl-base",
        "perl-modules-5.36",
        "install-info",
        "tar",
        "mailcap",
        "mime-support",
        "openssl",
        "debianutils",
        "sensible-utils",
    }
)
PRUNED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_LABEL = "oss-agent.sandbox-image"


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- finding built images


def find_built_image(client: docker.DockerClient) -> str | None:
    """The tag of an image `python -m sandbox.image` built here: the default recipe's, else the newest; None
    when there is none. This is how the sandbox finds its image offline without being told a tag."""
    try:
        found = client.api.images(filters={"label": BUILD_LABEL})
    except docker.errors.APIError:
        return None
    tagged = [
        (image.get("Created", 0), tag)
        for image in found
        for tag in image.get("RepoTags") or []
        if tag and not tag.startswith("<none>")
    ]
    default = recipe_tag()
    if any(tag == default for _, tag in tagged):
        return default
    return max(tagged)[1] if tagged else None


# ---------------------------------------------------------------- building images


def recipe_tag(pip_packages: Iterable[str] = (), extra_packages: Iterable[str] = ()) -> str:
    """The tag the builder gives an image for this recipe (a content hash)."""
    recipe = {"v": RECIPE_VERSION, "roots": ROOTS, "extra": sorted(extra_packages), "pip": sorted(pip_packages)}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"{REPOSITORY}:{digest}"


def resolve_packages(roots: Iterable[str], excluded: frozenset[str] = EXCLUDED) -> list[str]:
    """The Depends/PreDepends closure of ``roots`` (first usable alternative of each)."""
    out = _run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *roots,
        ]
    )
    graph: dict[str, list[list[str]]] = {}
    providers: dict[str, list[str]] = {}
    current = virtual = None
    open_group = False
    for line in out.splitlines():
        if not line.startswith(" "):
            current, virtual, open_group = line.strip(), None, False
            graph.setdefault(current, [])
        elif line.startswith("    ") and virtual:
            providers.setdefault(virtual, []).append(line.strip())
        elif current and ":" in line:
            kind, _, target = line.strip().lstrip("|").partition(":")
            if kind not in ("Depends", "PreDepends"):
                continue
            target = target.strip()
            virtual = target if target.startswith("<") else None
            if open_group:
                graph[current][-1].append(target)
            else:
                graph[current].append([target])
            open_group = line.startswith(" |")
    chosen: list[str] = []
    queue = list(roots)
    while queue:
        name = queue.pop(0)
        if name in chosen or name in excluded:
            continue
        chosen.append(name)
        for group in graph.get(name, []):
            candidates = [p for alt in group for p in (providers.get(alt, []) if alt.startswith("<") else [alt])]
            usable = [p for p in candidates if p not in excluded]
            if usable:
                queue.append(usable[0])
    return chosen


def _run(cmd: list[str], cwd: str | Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SandboxError(f"`{cmd[0]}` not found: building the sandbox image needs a Debian/Ubuntu host") from None
    if proc.returncode != 0:
        raise SandboxError(f"`{' '.join(cmd[:3])} ...` failed: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def _download(packages: list[str], dest: Path, quiet: bool) -> list[Path]:
    try:
        _run(["apt-get", "download", "-q", *packages], cwd=dest)
    except SandboxError:
        if os.geteuid() != 0:
            raise
        _log("apt-get download failed; refreshing the package lists and retrying", quiet)
        _run(["apt-get", "update", "-q"])
        _run(["apt-get", "download", "-q", *packages], cwd=dest)
    return sorted(dest.glob("*.deb"))


def _make_rootfs(debs: list[Path], root: Path, python: str) -> None:
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)])
    for pruned in PRUNED:
        shutil.rmtree(root / pruned, ignore_errors=True)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "mnt" / "data").mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    if certs:
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        bundle = "".join(c.read_text(errors="replace").rstrip("\n") + "\n" for c in certs)
        (root / "etc/ssl/certs/ca-certificates.crt").write_text(bundle)
    if not (root / "usr/bin/python3").exists():
        (root / "usr/bin/python3").symlink_to(python)


def _install_wheels(pip_packages: list[str], root: Path, version: str) -> None:
    target = root / f"usr/local/lib/python{version}/dist-packages"
    platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 28, 34)] + ["manylinux2014_x86_64"]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        "--target",
        str(target),
        "--python-version",
        version,
        "--only-binary=:all:",
        "--implementation",
        "cp",
    ]
    for platform in platforms:
        cmd += ["--platform", platform]
    _run(cmd + list(pip_packages))


def build_image(
    tag: str | None = None,
    *,
    pip_packages: Iterable[str] = (),
    extra_packages: Iterable[str] = (),
    force: bool = False,
    client: docker.DockerClient | None = None,
    quiet: bool = False,
) -> str:
    """Build the sandbox image from Debian packages (no registry) and return its tag.

    Nothing is done when an image built from the same recipe already exists,
    unless ``force``. ``pip_packages`` are installed from wheels (PyPI or the
    configured index) for the image's Python.
    """
    pip_packages, extra_packages = list(pip_packages), list(extra_packages)
    client = client or connect()
    recipe = recipe_tag(pip_packages, extra_packages)
    tag = tag or recipe
    previous = _image_id(client, recipe)
    if previous is not None and not force:
        if tag != recipe:
            _tag(client, previous, tag)
        return tag
    started = time.monotonic()
    roots = list(ROOTS) + extra_packages + (list(WHEEL_ROOTS) if pip_packages else [])
    packages = resolve_packages(roots)
    python = next((p for p in packages if p.startswith("python3.") and p.count("-") == 0), None)
    if python is None:
        raise SandboxError("could not find the python3.X package among the dependencies of python3")
    version = python[len("python") :]
    _log(f"Building {tag} from {len(packages)} Debian packages ({python}) ...", quiet)
    with tempfile.TemporaryDirectory(prefix="oss-agent-image-") as tmp:
        work = Path(tmp)
        (work / "debs").mkdir()
        debs = _download(packages, work / "debs", quiet)
        root = work / "root"
        root.mkdir()
        _make_rootfs(debs, root, python)
        if pip_packages:
            _log(f"Installing wheels: {' '.join(pip_packages)}", quiet)
            _install_wheels(pip_packages, root, version)
        rootfs = work / "rootfs.tar"
        _run(["tar", "-C", str(root), "--numeric-owner", "--owner=0", "--group=0", "-cf", str(rootfs), "."])
        base = f"{REPOSITORY}-base:{recipe.rsplit(':', 1)[1]}"
        client.api.import_image_from_file(
            str(rootfs),
            repository=base.split(":")[0],
            tag=base.split(":")[1],
            changes=[f"ENV PATH={PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'],
        )
    _precompile(client, base, recipe, version)
    if tag != recipe:
        _tag(client, recipe, tag)
    if previous is not None and previous != _image_id(client, recipe):
        _remove_unused(client, previous)  # a rebuild leaves no dangling <none> image behind
    size = client.api.inspect_image(recipe)["Size"] / 1e6
    _log(f"Built {tag} ({size:.1f} MB) in {time.monotonic() - started:.1f} s", quiet)
    return tag


def _image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.api.inspect_image(name)["Id"])
    except docker.errors.ImageNotFound:
        return None


def _remove_unused(client: docker.DockerClient, image_id: str) -> None:
    """Remove an image no tag points to any more; one a container still uses stays."""
    try:
        if not client.api.inspect_image(image_id).get("RepoTags"):
            client.api.remove_image(image_id)
    except docker.errors.APIError:  # in use by a container, or already gone
        pass


def _tag(client: docker.DockerClient, image: str, name: str) -> None:
    repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    client.api.tag(image, repository, tag)


def _precompile(client: docker.DockerClient, base: str, recipe: str, version: str) -> None:
    """Compile the standard library once, so a read-only container starts fast."""
    container = client.api.create_container(
        base,
        [
            "python3",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            f"/usr/lib/python{version}",
            f"/usr/local/lib/python{version}",
            "/usr/lib/python3",
        ],
        user="0:0",
        network_disabled=True,
        host_config=client.api.create_host_config(network_mode="none"),
    )
    try:
        client.api.start(container)
        status = client.api.wait(container, timeout=300)
        if status.get("StatusCode") not in (0, 1):  # 1: some optional directory did not exist
            logs = client.api.logs(container).decode(errors="replace")[-800:]
            raise SandboxError(f"precompiling the image failed: {logs}")
        repository, tag = recipe.rsplit(":", 1)
        client.api.commit(
            container,
            repository=repository,
            tag=tag,
            changes=['CMD ["python3"]', "WORKDIR /tmp", f'LABEL {BUILD_LABEL}="{RECIPE_VERSION}"'],
        )
    finally:
        client.api.remove_container(container, force=True)
    try:
        client.api.remove_image(base)
    except docker.errors.APIError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", help="also tag the image with this name")
    parser.add_argument("--pip", nargs="*", default=[], metavar="PKG", help="wheels to install (e.g. numpy)")
    parser.add_argument("--apt", nargs="*", default=[], metavar="PKG", help="extra Debian packages")
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    args = parser.parse_args(argv)
    try:
        tag = build_image(args.tag, pip_packages=args.pip, extra_packages=args.apt, force=args.force, quiet=args.quiet)
    except (SandboxError, docker.errors.DockerException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
