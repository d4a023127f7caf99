"""Loop overhead per step, and prompt-prefix reuse inside a tool chain.

A 20-step conversation (19 tool calls, then a final answer) grows to about 8k
prompt tokens. The backend is a `ScriptedBackend`, so everything measured is
the loop's own work outside the backend: rendering, parsing, routing, events.
The reference design re-renders the whole conversation with openai-harmony on
every step (as gpt-oss's own chat loop does); it is timed in the same run.
"""

from __future__ import annotations

import statistics
import time

from openai_harmony import Conversation, RenderConversationConfig, Role

from agent import Agent, tool
from agent.backends import ScriptedBackend, call, final
from agent.harmony.encoding import get_encoding

STEPS = 20
FILLER = "The quarterly figures show steady growth across every region we track. " * 30  # ~420 tokens


@tool
def fetch_report(page: int) -> str:
    """Return one page of the report."""
    return f"page {page}: {FILLER}"


def _script() -> list:
    turns = [
        call("functions.fetch_report", {"page": i}, reasoning=f"I need page {i} of the report.")
        for i in range(STEPS - 1)
    ]
    return turns + [final("The report shows steady growth.", reasoning="All pages read.")]


def _one_run() -> tuple[list[float], list[int], list[int], float]:
    backend = ScriptedBackend(_script(), chunk_size=16)
    agent = Agent(backend=backend, tools=[fetch_report], date="2026-01-15")
    steps = [e for e in agent.stream("Summarise the report.") if e.type == "step"]
    enc = get_encoding()
    started = time.perf_counter()  # reference: a full re-render per step
    header = agent.settings.header_messages()
    cut = 1
    for step in range(STEPS):
        while cut < len(agent.history) and not (agent.history[cut - 1].author.role == Role.TOOL):
            cut += 1
        conv = Conversation.from_messages(header + agent.history[:cut])
        enc.render_conversation_for_completion(conv, Role.ASSISTANT, RenderConversationConfig(auto_drop_analysis=False))
        cut += 1
    reference_per_step = (time.perf_counter() - started) / STEPS
    return (
        [s.overhead_s for s in steps],
        [s.prompt_tokens for s in steps],
        [s.shared_prefix_tokens for s in steps],
        reference_per_step,
    )


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 15
    _one_run()  # warm-up: encoding load, imports
    overheads, references = [], []
    for _ in range(repeats):
        per_step, prompts, shared, reference = _one_run()
        overheads.append(statistics.median(per_step))
        references.append(reference)
    ours = statistics.median(overheads)
    ref = statistics.median(references)
    new_tokens = [p - s for p, s in zip(prompts[1:], shared[1:])]
    shared_share = statistics.median(s / p for s, p in zip(shared[1:], prompts[1:]))
    return [
        {
            "name": f"loop overhead per step ({STEPS} steps, {prompts[-1]} prompt tokens at the end)",
            "median_ms": ours * 1e3,
            "spread_ms": (max(overheads) - min(overheads)) * 1e3,
            "reference": "full re-render per step, rendering alone",
            "reference_ms": ref * 1e3,
            "ratio_vs_reference": ours / ref,
        },
        {
            "name": "prompt tokens new per step inside the chain",
            "value": f"{statistics.median(new_tokens):.0f} new of {statistics.median(prompts[1:]):.0f} "
            f"({shared_share:.1%} shared with the previous request)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
