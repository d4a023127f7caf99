"""Saved sessions: exact restore, write-as-you-go, concurrent writers, ids."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from openai_harmony import Message, Role

from agent import Agent, tool
from agent.backends import ScriptedBackend, call, final
from agent.errors import SessionError
from agent.harmony.render import render_turn
from agent.sessions import SessionRecorder, SessionStore, restore


@tool
def get_weather(city: str) -> dict:
    """Get the current weather for a city.

    Args:
        city: City name.
    """
    return {"city": city, "sky": "sunny"}


def two_turn_agent(store: SessionStore) -> tuple[Agent, SessionRecorder]:
    backend = ScriptedBackend(
        [
            call("functions.get_weather", {"city": "Paris"}, reasoning="Need the weather."),
            final("Sunny in Paris.", reasoning="Tool said sunny."),
            final("You're welcome.", reasoning="Polite."),
        ]
    )
    agent = Agent(
        backend=backend, tools=[get_weather], instructions="Be brief.", reasoning_effort="high", date="2026-01-02"
    )
    recorder = SessionRecorder(store, agent, model="gpt-oss:20b", backend="scripted", tools=["weather.py"])
    for prompt in ("Weather in Paris?", "Thanks!"):
        for event in agent.stream(prompt):
            recorder.record(event)
    return agent, recorder


def test_round_trip_renders_the_same_prompt(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    agent, recorder = two_turn_agent(store)
    before = render_turn(agent.settings, agent.history)

    fresh = Agent(backend=ScriptedBackend([]), tools=[get_weather])  # default effort, today's date, no instructions
    saved = SessionStore(tmp_path / "s.db").load(recorder.session_id)
    assert restore(fresh, saved) is True
    assert render_turn(fresh.settings, fresh.history) == before
    assert [m.to_dict() for m in fresh.history] == [m.to_dict() for m in agent.history]  # reasoning included
    assert saved.info.turns == 2 and saved.info.title == "Weather in Paris?"
    assert saved.settings["model"] == "gpt-oss:20b" and saved.settings["tools"] == ["weather.py"]


def test_resumed_conversation_sends_what_the_original_would_have(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    agent, recorder = two_turn_agent(store)
    agent.backend = original = ScriptedBackend([final("Bye.")])
    agent.run("Bye")

    resumed = Agent(backend=ScriptedBackend([final("Bye.")]), tools=[get_weather])
    restore(resumed, store.load(recorder.session_id))
    resumed.run("Bye")
    assert resumed.backend.prompts == original.prompts


def test_restore_reports_different_tools(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    _, recorder = two_turn_agent(store)
    other = Agent(backend=ScriptedBackend([]))  # no tools
    assert restore(other, store.load(recorder.session_id)) is False
    assert len(other.history) == len(store.load(recorder.session_id).messages)


def test_each_message_is_stored_as_it_completes(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    backend = ScriptedBackend([call("functions.get_weather", {"city": "Oslo"}), final("Cold.")])
    agent = Agent(backend=backend, tools=[get_weather])
    recorder = SessionRecorder(store, agent)
    stored_after_each = []
    for event in agent.stream("Weather in Oslo?"):
        recorder.record(event)
        if event.type == "message":
            stored_after_each.append(len(SessionStore(tmp_path / "s.db").load(recorder.session_id).messages))
    assert stored_after_each == list(range(1, len(agent.history) + 1))


def test_effort_change_is_saved(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    agent, recorder = two_turn_agent(store)
    agent.reasoning_effort = "low"
    recorder.settings_changed()
    fresh = Agent(backend=ScriptedBackend([]), tools=[get_weather])
    restore(fresh, store.load(recorder.session_id))
    assert fresh.reasoning_effort == "low"
    assert render_turn(fresh.settings, fresh.history) == render_turn(agent.settings, agent.history)


def test_ids_resolve_by_unique_prefix(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    first = store.create({"model": "m"})
    store.append(first, Message.from_role_and_content(Role.USER, "hello"))
    assert store.resolve(first[:5]) == first
    assert store.latest().id == first
    with pytest.raises(SessionError, match="no saved session"):
        store.resolve("zzzz")
    with pytest.raises(SessionError, match="no saved session"):
        store.append("zzzz", Message.from_role_and_content(Role.USER, "x"))
    store.delete(first[:6])
    assert store.list() == []


def test_ambiguous_prefix(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    ids = [store.create({}) for _ in range(40)]  # 40 random hex ids share some first character
    first_chars = [i[0] for i in ids]
    shared = next(c for c in first_chars if first_chars.count(c) > 1)
    with pytest.raises(SessionError, match="ambiguous"):
        store.resolve(shared)


def _writer(path: str, session_id: str, tag: str, count: int, barrier) -> None:
    store = SessionStore(path)
    own = store.create({"writer": tag})
    barrier.wait(30)
    for i in range(count):
        store.append(session_id, Message.from_role_and_content(Role.USER, f"{tag} {i}"))
        store.append(own, Message.from_role_and_content(Role.ASSISTANT, f"{tag} {i}").with_channel("final"))
    store.close()


@pytest.mark.security
def test_two_processes_writing_at_once_do_not_corrupt_it(tmp_path):
    path = str(tmp_path / "s.db")
    shared = SessionStore(path).create({"writer": "both"})
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_writer, args=(path, shared, tag, 150, barrier)) for tag in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    store = SessionStore(path)
    both = store.load(shared)
    texts = [m.content[0].text for m in both.messages]
    assert sorted(texts) == sorted([f"{t} {i}" for t in "ab" for i in range(150)])
    for tag in "ab":  # each writer's own order is kept
        mine = [t for t in texts if t.startswith(tag)]
        assert mine == [f"{tag} {i}" for i in range(150)]
    assert both.info.turns == 300
    assert len(store.list()) == 3


# ---------------------------------------------------------------- storage failures and crashes


@pytest.mark.security
def test_a_damaged_database_is_a_session_error_that_names_the_file(tmp_path):
    path = tmp_path / "sessions.db"
    path.write_bytes(b"this is not SQLite at all " * 200)
    store = SessionStore(path)
    for action in (store.list, lambda: store.load("abc"), lambda: store.create({})):
        with pytest.raises(SessionError) as failed:
            action()
        message = str(failed.value)
        assert str(path) in message and "damaged" in message and "move it aside" in message
        assert "\n" not in message
    path.write_bytes(b"")  # moved aside: a new database starts
    assert SessionStore(path).list() == []


@pytest.mark.security
def test_a_full_disk_is_a_session_error_and_the_chat_goes_on(tmp_path):
    path = tmp_path / "sessions.db"
    store = SessionStore(path)
    agent = Agent(backend=ScriptedBackend([final("One."), final("Two.")]))
    recorder = SessionRecorder(store, agent)
    recorder.begin_turn("first")
    for event in agent.stream("first"):
        recorder.record(event)
    pages = store._conn().execute("PRAGMA page_count").fetchone()[0]
    store._conn().execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    with pytest.raises(SessionError) as failed:
        recorder.begin_turn("x" * 100_000)
    message = str(failed.value)
    assert str(path) in message and "disk is full" in message and "free some space" in message
    assert [m.author.role for m in store.load(recorder.session_id).messages] == [Role.USER, Role.ASSISTANT]


def test_other_storage_failures_name_the_file_and_what_to_do(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    with pytest.raises(SessionError, match="cannot write the sessions database .*set OSS_AGENT_HOME"):
        SessionStore(blocked / "sessions.db").list()
    raw = sqlite3.OperationalError("database is locked")
    from agent.sessions import storage_error

    assert "close other oss-agent processes" in str(storage_error(tmp_path / "s.db", raw))


def test_the_user_message_is_stored_when_the_turn_starts(tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    agent = Agent(backend=ScriptedBackend([final("Hello.")]))
    recorder = SessionRecorder(store, agent)
    recorder.begin_turn("Hi <|end|> there")
    early = store.load(recorder.session_id)
    assert [m.author.role for m in early.messages] == [Role.USER] and early.info.turns == 1
    for event in agent.stream("Hi <|end|> there"):
        recorder.record(event)
    saved = store.load(recorder.session_id)
    assert saved.messages == agent.history and saved.info.turns == 1  # confirmed in place, not twice


def test_a_turn_that_never_reached_the_model_is_taken_back(tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    recorder = SessionRecorder(store, Agent(backend=ScriptedBackend([])))
    recorder.begin_turn("lost?")
    recorder.abort_turn()
    assert store.list() == [] and recorder.session_id is None


CRASHING_CHILD = """
import asyncio, os, sys
from agent import Agent
from agent.backends import ScriptedBackend
from agent.sessions import SessionRecorder, SessionStore

class Silent(ScriptedBackend):
    async def stream(self, request):
        print("waiting for the first token", flush=True)
        await asyncio.Event().wait()
        yield []

agent = Agent(backend=Silent([]))
recorder = SessionRecorder(SessionStore(sys.argv[1]), agent)
recorder.begin_turn("remember this question")

async def main():
    async for event in agent.astream("remember this question"):
        recorder.record(event)

asyncio.run(main())
"""


@pytest.mark.security
def test_a_crash_before_the_first_token_loses_nothing(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "sessions.db"
    child = subprocess.Popen([sys.executable, "-c", CRASHING_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "waiting for the first token"
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    store = SessionStore(path)
    (info,) = store.list()
    saved = store.load(info.id)
    assert [m.author.role for m in saved.messages] == [Role.USER]
    assert saved.messages[0].content[0].text == "remember this question"
