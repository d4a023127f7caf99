"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    """Compare `text` with a pinned file under tests/golden/ (the file is written by hand review, never here)."""
    path = GOLDEN / name
    assert path.exists(), f"missing golden file {path}"
    assert text == path.read_text(encoding="utf-8"), f"rendered text differs from {path}"


def recorded(agent, store, prompts: list[str], **meta):
    """Run `prompts` through `agent` as the CLI does (the turn's user message first, then every event, stored
    with a `SessionRecorder`); returns the recorder, whose `session_id` names the saved session."""
    from agent.sessions import SessionRecorder

    recorder = SessionRecorder(store, agent, **meta)
    for prompt in prompts:
        recorder.begin_turn(prompt)
        for event in agent.stream(prompt):
            recorder.record(event)
    return recorder
