"""Sandbox latency: warm round trip, cold start, and a container per call, on one image.

``python benchmarks/bench_sandbox.py [--quick] [--image TAG]`` prints one row per
measurement: median and spread (90th minus 10th percentile) in milliseconds, and
how many times faster than the container-per-call reference it is.
The image is ``--image``, else ``$OSS_AGENT_SANDBOX_IMAGE``, else one built with
``python -m sandbox.image``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    low = ordered[int(0.1 * (len(ordered) - 1))]
    high = ordered[int(round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, (high - low) * 1000


def _time(fn: Callable[[], object], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def _image(image: str | None) -> str:
    if image or os.environ.get("OSS_AGENT_SANDBOX_IMAGE"):
        return image or os.environ["OSS_AGENT_SANDBOX_IMAGE"]
    from sandbox.image import build_image

    return build_image(quiet=True)


def _reference(image: str) -> Callable[[], object]:
    """A fresh ``docker run --rm IMAGE python3 -c ...`` per call (the stateless design)."""
    cli = shutil.which("docker")
    if cli:
        command = [cli, "run", "--rm", "--network", "none", image, "python3", "-c", "print(1+1)"]
        return lambda: subprocess.run(command, check=True, capture_output=True)
    import docker

    client = docker.from_env()
    return lambda: client.containers.run(image, ["python3", "-c", "print(1+1)"], remove=True, network_mode="none")


def run(quick: bool = False, image: str | None = None) -> list[dict]:
    """Measure and return rows ``{name, median_ms, spread_ms, samples, ratio_vs_reference}``."""
    from sandbox import DockerSandbox

    image = _image(image)
    warm_n, cold_n, ref_n = (50, 2, 2) if quick else (1000, 10, 10)

    with DockerSandbox(image) as box:
        box.run("1+1")
        warm = _time(lambda: box.run("1+1"), warm_n)

    def cold() -> None:
        box = DockerSandbox(image)
        try:
            box.run("1+1")
        finally:
            cold_close.append(box)

    cold_close: list[DockerSandbox] = []
    cold_samples = []
    for _ in range(cold_n):
        cold_samples += _time(cold, 1)
        cold_close.pop().close()

    reference = _reference(image)
    reference()  # first call pays for caches
    ref_samples = _time(reference, ref_n)

    ref_median, ref_spread = _stats(ref_samples)
    rows = []
    for name, samples in (
        ("warm round trip (1+1)", warm),
        ("cold start (create, start, first 1+1)", cold_samples),
    ):
        median, spread = _stats(samples)
        rows.append(
            {
                "name": name,
                "median_ms": round(median, 3),
                "spread_ms": round(spread, 3),
                "samples": len(samples),
                "reference": "docker run --rm per call",
                "reference_ms": round(ref_median, 3),
                "ratio_vs_reference": median / ref_median,  # below 1: faster than a container per call
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples (a smoke run)")
    parser.add_argument("--image", help="sandbox image tag")
    args = parser.parse_args()
    rows = run(quick=args.quick, image=args.image)
    print(f"{'measurement':<42} {'median ms':>10} {'spread ms':>10} {'n':>5} {'x faster':>9}")
    for row in rows:
        print(
            f"{row['name']:<42} {row['median_ms']:>10.3f} {row['spread_ms']:>10.3f} {row['samples']:>5} "
            f"{1 / row['ratio_vs_reference']:>9.1f}"
        )
    print(f"reference: {rows[0]['reference']}, median {rows[0]['reference_ms']:.3f} ms")


if __name__ == "__main__":
    main()
