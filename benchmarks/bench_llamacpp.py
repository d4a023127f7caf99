"""Prefill on a real llama-server: oss-agent's raw Harmony path against chat completions.

The same 10-step tool chain and a second user turn, on a tiny scripted gpt-oss
GGUF (it calls `lookup` ten times per user message, then answers), two ways:

1. oss-agent with `LlamaCppBackend`: every prompt of the chain extends the
   previous one token for token (`/completion`, ids, `cache_prompt`).
2. The way chat-completions frameworks talk to the server: the message list
   with the tool calls and results sent to `/v1/chat/completions`, rendered
   by llama-server's own gpt-oss template (`--jinja`).

Each path gets a fresh server. The figure is the server's own `prompt_n`
(tokens it had to prefill) per step; the ratio is chat completions / oss-agent
for the chain's steps 2+. Needs the llama-server binary and the converter
(`. .ci/llama_server.sh`) and the transformers extra (to build the GGUF).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny GGUF and server helpers

STEPS = 10
CTX = 8192
TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a thing up.",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string", "description": "What to look up."}},
            "required": ["q"],
        },
    },
}
NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}


def _lookup_tool() -> Any:
    from agent import tool

    @tool
    def lookup(q: str) -> str:
        """Look a thing up.

        Args:
            q: What to look up.
        """
        return f"{q} is 42"

    return lookup


def _ours(url: str) -> dict[str, list[int]]:
    from agent import Agent
    from agent.backends import LlamaCppBackend

    agent = Agent(
        backend=LlamaCppBackend(url),
        tools=[_lookup_tool()],
        max_steps=STEPS + 2,
        max_repeated_calls=STEPS + 1,
        date="2025-01-01",
    )
    out: dict[str, list[int]] = {}
    try:
        for turn, text in (("chain", "Hi"), ("second turn", "Once more")):
            result = agent.run(text)
            assert len(result.tool_calls) == STEPS, f"expected {STEPS} calls, got {len(result.tool_calls)}"
            out[turn] = [s.usage.prompt_tokens - s.usage.cached_prompt_tokens for s in result.steps]
            out[turn + " prompt"] = [s.usage.prompt_tokens for s in result.steps]
    finally:
        agent.close()
    return out


def _chat(url: str) -> dict[str, list[int]]:
    async def main() -> dict[str, list[int]]:
        messages: list[dict[str, Any]] = []
        out: dict[str, list[int]] = {}
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            for turn, text in (("chain", "Hi"), ("second turn", "Once more")):
                messages.append({"role": "user", "content": text})
                prefilled, prompts, calls = [], [], 0
                for _ in range(STEPS + 2):
                    r = await http.post(
                        "/v1/chat/completions",
                        json={"messages": messages, "tools": [TOOL_SCHEMA], "max_tokens": 256, **NEUTRAL},
                    )
                    r.raise_for_status()
                    body = r.json()
                    timings = body["timings"]
                    prefilled.append(timings["prompt_n"])
                    prompts.append(timings["prompt_n"] + timings.get("cache_n", 0))
                    message = body["choices"][0]["message"]
                    messages.append({k: v for k, v in message.items() if v is not None})
                    if not message.get("tool_calls"):
                        break
                    for tool_call in message["tool_calls"]:
                        calls += 1
                        messages.append({"role": "tool", "tool_call_id": tool_call.get("id", ""), "content": "x is 42"})
                assert calls == STEPS, f"expected {STEPS} calls through chat completions, got {calls}"
                out[turn], out[turn + " prompt"] = prefilled, prompts
        return out

    return asyncio.run(main())


def run(quick: bool = False) -> list[dict]:
    import tiny_gguf
    from llama_server import serve

    started = time.perf_counter()
    model = tiny_gguf.scripted(calls=STEPS)
    build_s = time.perf_counter() - started
    with serve(model, ctx=CTX) as server:
        ours = _ours(server.url)
    with serve(model, ctx=CTX, args=("--jinja",)) as server:
        theirs = _chat(server.url)
    rows: list[dict] = [{"name": "tiny scripted GGUF ready (build or cache)", "value": f"{build_s:.1f} s"}]
    for label, figures in (("oss-agent /completion", ours), ("chat completions --jinja", theirs)):
        rows.append(
            {
                "name": f"prefilled tokens per step, {STEPS}-step chain, {label}",
                "value": ", ".join(map(str, figures["chain"])),
            }
        )
        rows.append(
            {
                "name": f"prefilled tokens per step, second user turn, {label}",
                "value": ", ".join(map(str, figures["second turn"])),
            }
        )
    ours_chain, theirs_chain = statistics.median(ours["chain"][1:]), statistics.median(theirs["chain"][1:])
    rows.append(
        {
            "name": "median prefilled tokens, chain steps 2+: chat completions / oss-agent",
            "value": f"{theirs_chain:g} / {ours_chain:g} = {theirs_chain / ours_chain:.2f}x",
        }
    )
    total_ours = sum(ours["chain"]) + sum(ours["second turn"])
    total_theirs = sum(theirs["chain"]) + sum(theirs["second turn"])
    rows.append(
        {
            "name": "prefilled tokens, both turns: chat completions / oss-agent",
            "value": f"{total_theirs} / {total_ours} = {total_theirs / total_ours:.2f}x",
        }
    )
    return rows


if __name__ == "__main__":
    print("\n".join(f"{row['name']}: {row['value']}" for row in run()))
