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


def require_extra(extra: str, *modules: str) -> None:
    """Skip the calling test (or module) unless the optional extra's packages import, naming the extra.

    With OSS_AGENT_REQUIRE_EXTRAS=1 (CI, where every extra is installed) a missing package fails instead.
    """
    import importlib.util
    import os

    import pytest

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    reason = f"needs the {extra} extra ({', '.join(missing)}): pip install -e '.[{extra}]'"
    if os.environ.get("OSS_AGENT_REQUIRE_EXTRAS") == "1":
        pytest.fail(reason + " (OSS_AGENT_REQUIRE_EXTRAS=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
