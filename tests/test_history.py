"""Long conversations: the completion budget fits the room left, and history policies compact at the
start of a turn in large steps, keeping the system/developer messages, the CoT rule and resumed sessions."""

from __future__ import annotations

import pytest
from openai_harmony import Role
from realformat import assert_history_ok

from agent import Agent
from agent.backends import ScriptedBackend, final
from agent.backends.base import shared_prefix
from agent.errors import ContextOverflowError
from agent.events import HistoryCompacted, RunFinished, StepFinished
from agent.harmony.encoding import get_encoding
from agent.harmony.render import render_turn
from agent.history import Context, DropOldestTurns, KeepAll, ShrinkToolResults, Summarize, turns
from agent.sessions import SessionRecorder, SessionStore, restore
from benchmarks.bench_history import WINDOW, ChatModel, fetch


def long_chat(policy, turn_count: int = 200) -> tuple[Agent, ChatModel, list[HistoryCompacted]]:
    model = ChatModel()
    agent = Agent(backend=model, tools=[fetch], history=policy, date="2026-01-15")
    compactions = []
    for i in range(turn_count):
        for event in agent.stream(f"Read page {i + 1} and tell me about it."):
            if isinstance(event, HistoryCompacted):
                compactions.append(event)
    return agent, model, compactions


@pytest.mark.parametrize(
    "policy", [DropOldestTurns(), ShrinkToolResults(), Summarize()], ids=lambda p: type(p).__name__
)
def test_two_hundred_turns_complete_within_the_window(policy):
    agent, model, compactions = long_chat(policy)
    floor = agent.min_completion_tokens
    assert max(len(p) for p in model.prompts) <= WINDOW - floor
    assert all(r.max_tokens == min(2048, WINDOW - len(r.prompt)) for r in model.requests)
    assert len(compactions) >= 5
    # Large steps: from above the high-water mark to below the low-water mark each time.
    context = agent.context()
    for c in compactions:
        assert c.tokens_before > context.limit(0.75) and c.tokens_after <= context.limit(0.5)
    # The system and developer messages start every prompt, compacted or not.
    header = render_turn(agent.settings, [])[:-2]
    assert all(p[: len(header)] == header for p in model.prompts if "Summarise" not in get_encoding().decode(p[:400]))
    assert_history_ok(agent)


def test_keep_all_ends_with_the_clear_error():
    with pytest.raises(ContextOverflowError, match=r"keeps the whole history \(history=KeepAll\(\)\)"):
        long_chat(KeepAll())


def test_shrinking_stubs_old_tool_results_and_keeps_recent_ones():
    agent, _, compactions = long_chat(ShrinkToolResults(keep_turns=2), turn_count=12)
    assert compactions and "shrank" in compactions[0].summary
    results = [m for m in agent.history if m.author.role == Role.TOOL]
    texts = [m.content[0].text for m in results]
    assert texts[-1].startswith("page 12:") and texts[-2].startswith("page 11:")
    assert any(t.startswith("[elided to keep the conversation within the context window: ") for t in texts)
    assert_history_ok(agent)


def test_summarise_replaces_the_dropped_turns_with_the_model_s_summary():
    agent, model, compactions = long_chat(Summarize(), turn_count=12)
    assert compactions and "summarised" in compactions[0].summary
    first = agent.history[0]
    assert first.author.role == Role.USER and "The user read many pages" in first.content[0].text
    assert_history_ok(agent)


def test_compaction_happens_only_at_the_start_of_a_turn_never_inside_a_chain():
    model = ChatModel()
    agent = Agent(backend=model, tools=[fetch], history=DropOldestTurns(), date="2026-01-15")
    for i in range(30):
        events = list(agent.stream(f"Read page {i + 1}."))
        kinds = [type(e).__name__ for e in events]
        if "HistoryCompacted" in kinds:
            assert kinds.index("HistoryCompacted") <= 1  # after the user's own message event, before any step
        steps = [e for e in events if isinstance(e, StepFinished)]
        # Inside the turn's chain every prompt extends the previous one token for token.
        assert all(s.shared_prefix_tokens == prev.prompt_tokens for prev, s in zip(steps, steps[1:], strict=False))
        assert isinstance(events[-1], RunFinished)


def test_the_cot_rule_holds_after_compaction():
    agent, model, compactions = long_chat(DropOldestTurns(), turn_count=14)
    assert compactions
    agent.backend.turn = 99  # the next call fetches page 100
    list(agent.stream("One more page."))
    chain_prompt = get_encoding().decode(model.prompts[-1])
    turns_text = chain_prompt.split("<|start|>user")
    assert all("<|channel|>analysis" not in t for t in turns_text[1:-1])  # earlier turns: reasoning dropped
    assert "Need page 100." in turns_text[-1]  # the current chain keeps its reasoning


def test_a_session_resumed_after_compaction_renders_the_same_prompt(tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    model = ChatModel()
    agent = Agent(backend=model, tools=[fetch], history=DropOldestTurns(), date="2026-01-15")
    recorder = SessionRecorder(store, agent)
    compacted = 0
    for i in range(15):
        recorder.begin_turn(f"Read page {i + 1}.")
        for event in agent.stream(f"Read page {i + 1}."):
            recorder.record(event)
            compacted += isinstance(event, HistoryCompacted)
    assert compacted
    saved = store.load(recorder.session_id)
    assert len(saved.messages) > len(agent.history)  # the full conversation is kept
    again = Agent(backend=ChatModel(), tools=[fetch], history=DropOldestTurns(), date="2026-01-15")
    assert restore(again, saved)
    assert render_turn(again.settings, again.history) == render_turn(agent.settings, agent.history)


def test_a_small_context_gets_the_room_left_not_the_full_budget():
    backend = ScriptedBackend([final("hi")], context_window=8192, max_completion_tokens=8192)
    agent = Agent(backend=backend, date="2026-01-15")
    assert agent.run("hi").output == "hi"
    request = backend.requests[0]
    assert request.max_tokens == 8192 - len(request.prompt)


def test_a_policy_may_be_a_plain_function():
    seen = []

    def keep_last_two_turns(history, context: Context):
        seen.append(context.prompt_tokens(history))
        kept = turns(history)[-2:]
        from agent.history import Compaction

        return Compaction([m for t in kept for m in t], "kept two turns") if len(turns(history)) > 2 else None

    backend = ScriptedBackend([final(str(i)) for i in range(4)])
    agent = Agent(backend=backend, history=keep_last_two_turns, date="2026-01-15")
    for i in range(4):
        agent.run(f"turn {i}")
    assert [m.content[0].text for m in agent.history if m.author.role == Role.USER] == ["turn 2", "turn 3"]
    assert len(seen) == 4
    assert shared_prefix(backend.prompts[-2], backend.prompts[-1]) < len(backend.prompts[-2])
