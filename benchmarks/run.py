"""Run every benchmark of the project and print one table.

    python -m benchmarks.run            # full run (minutes)
    python -m benchmarks.run --quick    # smoke mode, used by CI so the suite cannot rot
    python -m benchmarks.run --only loop sandbox

Each benchmark module has `run(quick) -> list[dict]`; rows carry a median and
spread in milliseconds and, where a reference design was measured in the same
run, its time and our ratio to it (below 1 means faster than the reference).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = {
    "loop": "benchmarks.bench_loop",
    "backends": "benchmarks.bench_backends",
    "sandbox": "benchmarks.bench_sandbox",
    "browser": "benchmarks.bench_browser",
    "llamacpp": "benchmarks.bench_llamacpp",
    "history": "benchmarks.bench_history",
    "output": "benchmarks.bench_output",
    "export": "benchmarks.bench_export",
}


def _ms(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def format_table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| benchmark | measure | median ms | spread ms | reference | reference ms | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, row in rows:
        ratio = row.get("ratio_vs_reference")
        if "value" in row:
            lines.append(f"| {group} | {row['name']} | {row['value']} | | | | |")
            continue
        lines.append(
            f"| {group} | {row['name']} | {_ms(row.get('median_ms'))} | {_ms(row.get('spread_ms'))} | "
            f"{row.get('reference', '')} | {_ms(row.get('reference_ms'))} | "
            f"{f'{ratio:.3g}' if isinstance(ratio, (int, float)) else '–'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, for CI")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)
    rows: list[tuple[str, dict]] = []
    failed = False
    for name in args.only or BENCHMARKS:
        started = time.perf_counter()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            rows += [(name, row) for row in module.run(quick=args.quick)]
        except Exception as exc:  # one broken benchmark should not hide the others
            print(f"{name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
        print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(format_table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
