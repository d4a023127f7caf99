"""Raw gpt-oss completions collected by other projects, and the tools their cases offer.

`data/realformat/corpus.json` holds each completion with its source (repository,
commit, path, test) and the reading that project considers correct. This module
turns a case into sampling passes, the tools it offers, and checks on what the
agent made of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openai_harmony import Role, ToolDescription, ToolNamespaceConfig

from agent import Agent
from agent.harmony.encoding import get_encoding, special_ids
from agent.harmony.invariants import history_problems
from agent.harmony.parse import message_text
from tools.base import BuiltinTool, Tool, ToolCall

CORPORA = [Path(__file__).parent / "data" / "realformat" / name for name in ("corpus.json", "corpus-2.json")]


def cases() -> list[dict[str, Any]]:
    """Every collected case, each tagged with the file it comes from."""
    out = []
    for path in CORPORA:
        for case in json.loads(path.read_text())["cases"]:
            out.append({**case, "corpus": path.name})
    return out


def case_tokens(case: dict[str, Any]) -> list[int]:
    return case.get("tokens") or get_encoding().encode(case["raw"], allowed_special="all")


def passes(case: dict[str, Any]) -> list[list[int]]:
    """The completion as a sampler produces it: one pass per stop token (each ends with it).

    A tool-call case keeps the passes up to its first call: what follows a call
    in the collected text is the tool's reply or later turns, not a completion.
    """
    stops = special_ids().stops
    out, current = [], []
    for token in case_tokens(case):
        current.append(token)
        if token in stops:
            out.append(current)
            current = []
            if token == special_ids().call and case["expected"]["kind"] == "tool_call":
                return out
    if current:
        out.append(current)
    return out


class RecordingFunction(Tool):
    """A function tool that takes any JSON and records the calls."""

    def __init__(self, name: str, calls: list[ToolCall]) -> None:
        self.name = name
        self.calls = calls

    def tool_description(self) -> ToolDescription:
        return ToolDescription.new(self.name, f"Test tool {self.name}.", parameters={"type": "object"})

    async def invoke(self, call: ToolCall) -> str:
        self.calls.append(call)
        return json.dumps({"ok": True})


class RecordingBuiltin(BuiltinTool):
    """The `python` or `browser` namespace, recording calls instead of running them."""

    def __init__(self, name: str, calls: list[ToolCall]) -> None:
        self.name = name
        self.calls = calls

    def namespace_config(self) -> ToolNamespaceConfig:
        return ToolNamespaceConfig.python() if self.name == "python" else ToolNamespaceConfig.browser()

    async def invoke(self, call: ToolCall) -> str:
        self.calls.append(call)
        return "ok"


def case_tools(case: dict[str, Any]) -> tuple[list[Tool], list[ToolCall]]:
    calls: list[ToolCall] = []
    tools: list[Tool] = []
    for name in case.get("tools", []):
        tools.append(RecordingBuiltin(name, calls) if name in ("python", "browser") else RecordingFunction(name, calls))
    return tools, calls


def check_reading(case: dict[str, Any], agent: Agent, result: Any, calls: list[ToolCall], closing: str) -> None:
    """Assert the turn read the completion as the case's source expects."""
    expected, kind = case["expected"], case["expected"]["kind"]
    analysis = [
        message_text(m) for m in result.messages if m.author.role.value == "assistant" and m.channel == "analysis"
    ]
    if "reasoning" in expected:  # one message, or several the source reports as one text, a line each
        assert expected["reasoning"] in analysis or expected["reasoning"] in "\n".join(analysis), (case["id"], analysis)
    if "preamble" in expected:
        preambles = [
            message_text(m)
            for m in result.messages
            if m.channel == "commentary" and not m.recipient and m.author.role.value == "assistant"
        ]
        assert expected["preamble"] in preambles
    if kind == "final":
        assert result.output == expected["final"], case["id"]
        assert calls == []
    elif kind == "tool_call":
        first = expected["tool_calls"][0]
        assert calls, f"{case['id']}: no call was made"
        call = calls[0]
        assert call.name == first["name"], (case["id"], call)
        if first.get("method"):
            assert call.method == first["method"]
        want = first["arguments"]
        got = call.arguments if isinstance(want, str) else json.loads(call.arguments)
        assert got == want, case["id"]
        assert result.output == closing
    else:  # reasoning_only, no_call, error: nothing is executed or answered from this completion
        assert calls == [], case["id"]
        outcome = result.steps[0].outcome
        assert outcome == ("continue" if kind == "reasoning_only" else "retry"), (case["id"], outcome)
        assert result.output == closing
    assert_history_ok(agent)


def assert_history_ok(agent: Agent) -> None:
    problems = history_problems(agent.history, agent.tools.route)
    assert problems == [], problems


def assert_prompts_strict(prompts: list[list[int]]) -> None:
    """Every prompt is valid Harmony: openai-harmony's strict parser reads all of it."""
    enc, header = get_encoding(), list(special_ids().assistant_header)
    for prompt in prompts:
        assert prompt[-len(header) :] == header
        messages = enc.parse_messages_from_completion_tokens(prompt[: -len(header)], None, strict=True)
        assert messages and messages[0].author.role == Role.SYSTEM
