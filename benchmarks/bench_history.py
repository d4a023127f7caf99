"""Long conversations: prefill cost of each history policy over a 200-turn chat on a 16k window.

A synthetic chat (`ChatModel`: one tool call per turn returning a ~2,700-token
page, then an answer) runs for 200 user turns under each built-in policy and
under a trim-every-turn policy (drop just enough of the oldest turns to stay
under the mark, each turn), measured in the same run. For every request the
tokens a prefix-caching server would prefill are counted (prompt minus the
prefix shared with the previous request and its completion, as llama-server
and Ollama reuse their KV cache). Reported per policy: median prompt tokens per
turn, turns that re-prefilled most of their prompt, total prefilled tokens and
the ratio to trim-every-turn (below 1: less prefill).

    python -m benchmarks.bench_history [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from agent import Agent, tool
from agent.backends import call, final
from agent.backends.base import CompletionRequest, Usage, shared_prefix
from agent.backends.scripted import completion_tokens
from agent.harmony.encoding import get_encoding, special_ids
from agent.history import DropOldestTurns, ShrinkToolResults, Summarize

WINDOW = 16_384
PAGE = " ".join(f"word{i}" for i in range(900))  # about 2,700 tokens of tool output


@tool
def fetch(n: int) -> str:
    """Fetch page n."""
    return f"page {n}: {PAGE}"


class ChatModel:
    """A model for long conversations: calls `fetch` once per user turn, then answers; summarises on request.

    It decides from the prompt, as a real model does, so any history policy can run against it.
    """

    def __init__(self, window: int = WINDOW, max_completion_tokens: int = 2048) -> None:
        self.context_window = window
        self.max_completion_tokens = max_completion_tokens
        self.prompts: list[list[int]] = []
        self.completions: list[list[int]] = []
        self.requests: list[CompletionRequest] = []
        self.turn = 0

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        enc, prompt = get_encoding(), request.prompt
        self.prompts.append(list(prompt))
        self.requests.append(request)
        starts = [i for i, t in enumerate(prompt) if t == special_ids().start]
        last_message = enc.decode(prompt[starts[-2] : starts[-2] + 8])
        item: Any
        if "Summarise the conversation you are given" in enc.decode(prompt[:400]):
            item = final("The user read many pages; each answer named the page.", reasoning="Summarise.")
        elif last_message.startswith("<|start|>functions.fetch to=assistant"):
            item = final(f"Answer {self.turn}.", reasoning="The page is here.")
        else:
            self.turn += 1
            item = call("functions.fetch", {"n": self.turn}, reasoning=f"Need page {self.turn}.")
        tokens = completion_tokens(item)
        self.completions.append(tokens)
        yield tokens
        yield Usage(prompt_tokens=len(prompt), completion_tokens=len(tokens), finish_reason="stop")

    async def aclose(self) -> None:
        return None

    def prefilled(self) -> list[int]:
        """Per request: the tokens a prefix-caching server prefills (the rest it has from the request before)."""
        out, cached = [], []
        for prompt, completion in zip(self.prompts, self.completions, strict=True):
            out.append(len(prompt) - shared_prefix(cached, prompt))
            cached = prompt + completion
        return out


def trim_every_turn() -> DropOldestTurns:
    """The naive policy: each turn, drop just enough of the oldest turns to stay under the mark."""
    return DropOldestTurns(high=0.75, low=0.75)


POLICIES = {
    "ShrinkToolResults (default)": ShrinkToolResults,
    "DropOldestTurns": DropOldestTurns,
    "Summarize": Summarize,
    "trim every turn": trim_every_turn,
}


def chat(policy: Any, turns: int) -> tuple[ChatModel, list[int], float]:
    """Run `turns` user turns; returns the model, the index of each turn's first request, and seconds."""
    model = ChatModel()
    agent = Agent(backend=model, tools=[fetch], history=policy, date="2026-01-15")
    firsts = []
    started = time.perf_counter()
    for i in range(turns):
        firsts.append(len(model.prompts))
        agent.run(f"Read page {i + 1} and tell me about it.")
    return model, firsts, time.perf_counter() - started


def measure(turns: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for name, make in POLICIES.items():
        model, firsts, seconds = chat(make(), turns)
        prefilled = model.prefilled()
        per_turn = [len(model.prompts[i]) for i in firsts]
        full = sum(1 for i in firsts if prefilled[i] > len(model.prompts[i]) // 2)
        totals[name] = sum(prefilled)
        rows.append(
            {
                "name": name,
                "turns": turns,
                "median_prompt": int(statistics.median(per_turn)),
                "max_prompt": max(len(p) for p in model.prompts),
                "full_prefills": full,
                "every_n": round(turns / full, 1) if full else None,
                "prefilled": totals[name],
                "ms_per_turn": 1000 * seconds / turns,
            }
        )
    for row in rows:
        row["ratio"] = row["prefilled"] / totals["trim every turn"]
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Rows for `benchmarks.run`."""
    out = []
    for row in measure(40 if quick else 200):
        every = f"1 in {row['every_n']}" if row["every_n"] else "none"
        out.append(
            {
                "name": f"{row['name']}: prefilled tokens over {row['turns']} turns (full re-prefills: {every}; "
                f"median prompt {row['median_prompt']:,}, max {row['max_prompt']:,} of {WINDOW:,})",
                "value": f"{row['prefilled']:,} ({row['ratio']:.2f}× trim every turn)",
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print("| policy | turns | median prompt | max prompt | full re-prefills | prefilled tokens | ratio | ms/turn |")
    print("|---|---|---|---|---|---|---|---|")
    for r in measure(40 if args.quick else 200):
        every = f"{r['full_prefills']} (1 in {r['every_n']})" if r["every_n"] else "0"
        print(
            f"| {r['name']} | {r['turns']} | {r['median_prompt']:,} | {r['max_prompt']:,} | {every} | "
            f"{r['prefilled']:,} | {r['ratio']:.2f} | {r['ms_per_turn']:.1f} |"
        )


if __name__ == "__main__":
    main()
