"""The cost of turning saved sessions into fine-tuning examples.

1. `export_sft` end to end on a sessions database of two-turn tool chains
   (SQLite read, prompt rendering, masks, chat form, cleaning, JSONL write):
   milliseconds per example, with near-duplicate removal and, as the reference,
   without it.
2. Near-duplicate detection alone on user messages of which about a third are
   rephrasings: MinHash with LSH (what the export uses) against comparing every
   pair's exact Jaccard similarity of the same 5-gram sets (the obvious design),
   in milliseconds per message, and how many duplicates each finds.
"""

from __future__ import annotations

import io
import random
import statistics
import tempfile
import time
from pathlib import Path

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Hanoi", "Quito", "Perth", "Dakar", "Riga", "Baku", "Accra"]
TOPICS = ["weather", "air quality", "sunset time", "tide times", "pollen count", "UV index", "humidity"]
FORMS = [
    "What is the {t} in {c} today?",
    "Could you tell me the {t} for {c}?",
    "{c}: current {t}, please.",
    "How is the {t} looking in {c} this week?",
]


def questions(n: int, seed: int = 0) -> list[str]:
    """`n` user messages; about a third repeat an earlier one with small changes of case and punctuation."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        if out and i % 3 == 2:
            base = rng.choice(out)
            out.append(base.lower().rstrip("?.") + rng.choice(["??", " ?", "!", "."]))
        else:
            out.append(rng.choice(FORMS).format(t=rng.choice(TOPICS), c=rng.choice(CITIES)) + f" (ref {i})")
    return out


def _database(path: Path, sessions: int) -> None:
    from agent import Agent, tool
    from agent.backends import ScriptedBackend, call, final
    from agent.sessions import SessionRecorder, SessionStore

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}, 21 C"

    store = SessionStore(path)
    for i, question in enumerate(questions(sessions)):
        city = CITIES[i % len(CITIES)]
        script = [
            call("functions.get_weather", f'{{"city":"{city}"}}', reasoning=f"Need {city}. " * 20),
            final(f"It is sunny in {city}. " * 10, reasoning="The tool says sunny."),
            final("You are welcome.", reasoning="Polite."),
        ]
        agent = Agent(ScriptedBackend(script), tools=[get_weather], date="2026-12-01")
        recorder = SessionRecorder(store, agent)
        for prompt in (question, "Thanks!"):
            recorder.begin_turn(prompt)
            for event in agent.stream(prompt):
                recorder.record(event)
    store.close()


def _export_rows(quick: bool) -> list[dict]:
    from agent.sessions import SessionStore
    from agent.training import export_sft

    sessions, repeats = (30, 3) if quick else (300, 5)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sessions.db"
        _database(path, sessions)
        _minhash(["warm up: imports datasketch and scipy"], 0.8)
        times: dict[str, list[float]] = {"dedupe": [], "plain": []}
        examples = {}
        for _ in range(repeats):
            for label, threshold in (("plain", None), ("dedupe", 0.8)):
                store = SessionStore(path)
                started = time.perf_counter()
                report = export_sft(store, all_sessions=True, out=io.StringIO(), near_duplicates=threshold)
                times[label].append((time.perf_counter() - started) * 1000)
                examples[label] = report.examples
                store.close()
    per = {k: [t / max(examples["plain"], 1) for t in v] for k, v in times.items()}
    plain, dedupe = statistics.median(per["plain"]), statistics.median(per["dedupe"])
    return [
        {
            "name": f"export_sft ms/example, no near-duplicate removal ({examples['plain']} examples)",
            "median_ms": plain,
            "spread_ms": statistics.pstdev(per["plain"]),
        },
        {
            "name": "export_sft ms/example, MinHash near-duplicate removal",
            "median_ms": dedupe,
            "spread_ms": statistics.pstdev(per["dedupe"]),
            "reference": "no removal",
            "reference_ms": plain,
            "ratio_vs_reference": dedupe / plain,
        },
        {
            "name": "examples kept with / without near-duplicate removal",
            "value": f"{examples['dedupe']} / {examples['plain']}",
        },
    ]


def _pairwise(texts: list[str], threshold: float) -> int:
    from agent.training.clean import shingles

    kept: list[set[str]] = []
    dropped = 0
    for text in texts:
        grams = shingles(text)
        if any(len(grams & other) / len(grams | other) >= threshold for other in kept):
            dropped += 1
        else:
            kept.append(grams)
    return dropped


def _minhash(texts: list[str], threshold: float) -> int:
    from agent.training.clean import NearDuplicates

    near = NearDuplicates(threshold)
    return sum(near.seen(text) for text in texts)


def _dedupe_rows(quick: bool) -> list[dict]:
    n, repeats = (300, 3) if quick else (3000, 3)
    texts = questions(n, seed=1)
    timings: dict[str, list[float]] = {"minhash": [], "pairwise": []}
    found = {}
    for _ in range(repeats):
        for label, method in (("minhash", _minhash), ("pairwise", _pairwise)):
            started = time.perf_counter()
            found[label] = method(texts, 0.8)
            timings[label].append((time.perf_counter() - started) * 1000 / n)
    minhash, pairwise = statistics.median(timings["minhash"]), statistics.median(timings["pairwise"])
    return [
        {
            "name": f"near duplicates among {n:,} messages, pairwise exact Jaccard, ms/message",
            "median_ms": pairwise,
            "spread_ms": statistics.pstdev(timings["pairwise"]),
        },
        {
            "name": f"near duplicates among {n:,} messages, MinHash LSH, ms/message",
            "median_ms": minhash,
            "spread_ms": statistics.pstdev(timings["minhash"]),
            "reference": "pairwise Jaccard",
            "reference_ms": pairwise,
            "ratio_vs_reference": minhash / pairwise,
        },
        {"name": "duplicates found, MinHash LSH / pairwise", "value": f"{found['minhash']} / {found['pairwise']}"},
    ]


def run(quick: bool = False) -> list[dict]:
    return _export_rows(quick) + _dedupe_rows(quick)


if __name__ == "__main__":
    from benchmarks.run import format_table

    print(format_table([("export", row) for row in run()]))
