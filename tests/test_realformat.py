"""Every collected gpt-oss completion is read as its source project reads it, and leaves a healthy history.

Each case runs through `ScriptedBackend` (token ids, stop tokens included) and
through the Ollama backend against the fake server (text with the stop tokens
left out, as raw mode streams it); after each, the history passes the invariant
checker, takes a second user turn, and passes it again.
"""

from __future__ import annotations

import pytest

from agent import Agent
from agent.backends import ScriptedBackend, final
from agent.backends.ollama import OllamaBackend
from fake_ollama import FakeOllama, final_text, respx_ollama
from realformat import assert_history_ok, case_tools, cases, check_reading, passes

CASES = {case["id"]: case for case in cases()}
CLOSING = "Closing answer."


def closing(case, item):
    """After a completion that does not answer, the model's next pass answers."""
    return [] if case["expected"]["kind"] == "final" else [item]


def test_the_corpus_is_the_collected_one():
    assert len(CASES) == 43
    kinds = {c["expected"]["kind"] for c in CASES.values()}
    assert kinds == {"final", "tool_call", "reasoning_only", "no_call", "error"}
    assert all(c["source"].get("repo") for c in CASES.values())


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_scripted(case_id):
    case = CASES[case_id]
    tools, calls = case_tools(case)
    backend = ScriptedBackend([*passes(case), *closing(case, final(CLOSING))])
    agent = Agent(backend=backend, tools=tools, date="2026-01-15")
    result = agent.run("Go.")
    check_reading(case, agent, result, calls, CLOSING)
    backend.assert_complete()
    backend.add(final("Second answer."))
    assert agent.run("And now?").output == "Second answer."
    assert_history_ok(agent)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_through_ollama(case_id):
    case = CASES[case_id]
    tools, calls = case_tools(case)
    from agent.harmony.encoding import get_encoding

    texts = [get_encoding().decode(p) for p in passes(case)]
    fake = FakeOllama([*texts, *closing(case, final_text(CLOSING))])
    with respx_ollama(fake):
        agent = Agent(backend=OllamaBackend(host="http://127.0.0.1:11434"), tools=tools, date="2026-01-15")
        result = agent.run("Go.")
        check_reading(case, agent, result, calls, CLOSING)
        assert fake.remaining == 0
        fake.add(final_text("Second answer."))
        assert agent.run("And now?").output == "Second answer."
        assert_history_ok(agent)
    for request in fake.generate_requests:
        assert request["raw"] is True
