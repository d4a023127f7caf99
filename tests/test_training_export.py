"""Fine-tuning export: recorded sessions become Harmony training examples that match what the model saw."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from helpers import recorded, require_extra
from openai_harmony import Message, Role
from pydantic import BaseModel

from agent import Agent, tool
from agent.backends import ScriptedBackend, call, final
from agent.backends.scripted import completion_tokens
from agent.errors import ConfigurationError, OutputRetry
from agent.harmony.encoding import get_encoding
from agent.harmony.invariants import history_problems
from agent.harmony.parse import CompletionParser
from agent.history import DropOldestTurns, forced
from agent.sessions import SessionRecorder, SessionStore
from agent.training import export_sft
from agent.training.chat_format import from_chat
from agent.training.clean import DEFAULT_THRESHOLD, text_problem
from agent.training.examples import IGNORE, render_example

DATE = "2026-12-01"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == "Atlantis":
        raise ValueError("no such city")
    return f"sunny in {city}, 21 C"


def record(agent: Agent, store: SessionStore, prompts: list[str]) -> SessionRecorder:
    return recorded(agent, store, prompts, model="gpt-oss:20b", backend="scripted")


def export(store: SessionStore, ids=None, **kwargs):
    """The export as rows and report; near duplicates are judged only where a test asks (the finetune extra)."""
    kwargs.setdefault("near_duplicates", None)
    out = io.StringIO()
    report = export_sft(store, ids, out=out, **kwargs)
    return [json.loads(line) for line in out.getvalue().splitlines()], report


def two_turn_chain():
    script = [
        call("functions.get_weather", {"city": "Paris"}, reasoning="Need the weather in Paris."),
        final("It is sunny in Paris, 21 C.", reasoning="The tool says sunny."),
        call("functions.get_weather", '{"city":"Rome"}', reasoning="Now Rome."),
        call("functions.get_weather", '{"city":"Oslo"}', reasoning="And Oslo to compare."),
        final("Rome and Oslo are both sunny.", reasoning="Both sunny."),
    ]
    return script, ScriptedBackend(script)


@pytest.fixture
def store(tmp_path):
    s = SessionStore(tmp_path / "sessions.db")
    yield s
    s.close()


def test_each_turn_exports_the_prompts_the_backend_received_and_labels_exactly_the_sampled_tokens(store):
    script, backend = two_turn_chain()
    agent = Agent(backend, tools=[get_weather], date=DATE)
    recorder = record(agent, store, ["Weather in Paris?", "And Rome and Oslo?"])
    rows, report = export(store, [recorder.session_id])
    enc = get_encoding()
    assert report.examples == 2 and report.calls == {"functions.get_weather": 3}

    steps_of_turn = [[0, 1], [2, 3, 4]]
    for row, steps in zip(rows, steps_of_turn, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        first = backend.prompts[steps[0]]
        # the prompt part is byte for byte the turn's first request
        assert enc.decode(ids[: row["meta"]["prompt_tokens"]]) == backend.prompt_texts[steps[0]]
        assert ids[: len(first)] == first
        # every later request of the chain is a prefix, and the example ends with the last completion
        expected_mask = [False] * len(ids)
        for step in steps:
            prompt, sampled = backend.prompts[step], completion_tokens(script[step])
            assert ids[: len(prompt)] == prompt
            assert ids[len(prompt) : len(prompt) + len(sampled)] == sampled
            for i in range(len(prompt), len(prompt) + len(sampled)):
                expected_mask[i] = True
        last = backend.prompts[steps[-1]] + completion_tokens(script[steps[-1]])
        assert ids == last
        assert [label != IGNORE for label in labels] == expected_mask
        assert all(label in (IGNORE, token) for label, token in zip(labels, ids, strict=True))
        target = enc.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE])
        assert target.endswith("<|return|>") and "21 C<|end|>" not in target  # tool results are context
        assert "functions.get_weather to=assistant" in enc.decode(ids)

    # the second turn's prompt has the first turn's reasoning dropped, and keeps its own chain's
    second = enc.decode(rows[1]["input_ids"])
    assert "Need the weather in Paris." not in second and "Now Rome." in second and "And Oslo" in second
    assert rows[1]["meta"] == {
        "session": recorder.session_id,
        "turn": 2,
        "rating": None,
        "calls": ["functions.get_weather"] * 2,
        "failed_calls": 0,
        "prompt_tokens": len(backend.prompts[2]),
        "target_tokens": rows[1]["meta"]["target_tokens"],
    }


def test_the_chat_form_converts_back_to_harmony_and_renders_the_same_ids(store):
    _, backend = two_turn_chain()
    agent = Agent(backend, tools=[get_weather], date=DATE, instructions="Answer briefly.", reasoning_effort="low")
    recorder = record(agent, store, ["Weather in Paris?", "And Rome and Oslo?"])
    rows, _ = export(store, [recorder.session_id])
    for row in rows:
        settings, history, target = from_chat(json.loads(json.dumps(row)))  # through JSON, as read from the file
        assert render_example(settings, history, target) == (row["input_ids"], row["labels"])

    messages = rows[1]["messages"]
    assert messages[0] == {"role": "developer", "content": "Answer briefly."}
    assert rows[1]["chat_template_kwargs"] == {"reasoning_effort": "low", "builtin_tools": []}
    assert rows[1]["tools"][0]["function"]["name"] == "get_weather"
    assert rows[1]["conversation_start_date"] == DATE
    # the Hugging Face template's shape: thinking on the call and on the answer, tool results by name
    rome = {
        "role": "assistant",
        "content": "",
        "thinking": "Now Rome.",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Rome"}, "content_type": "<|constrain|>json"},
            }
        ],
    }
    assert messages[-6:-3] == [
        {"role": "user", "content": "And Rome and Oslo?"},
        rome,  # gpt-oss's compact JSON arguments become an object, as the template wants them
        {"role": "tool", "name": "functions.get_weather", "content": "sunny in Rome, 21 C"},
    ]
    assert messages[-1] == {"role": "assistant", "content": "Rome and Oslo are both sunny.", "thinking": "Both sunny."}
    # earlier turns' reasoning is not in the chat form either
    assert "thinking" not in messages[4] and messages[4]["content"] == "It is sunny in Paris, 21 C."


def test_target_tokens_parse_back_to_the_turns_messages(store):
    _, backend = two_turn_chain()
    agent = Agent(backend, tools=[get_weather], date=DATE)
    recorder = record(agent, store, ["Weather in Paris?", "And Rome and Oslo?"])
    rows, _ = export(store, [recorder.session_id])
    saved = store.load(recorder.session_id)
    row = rows[1]
    start = row["meta"]["prompt_tokens"]
    parser = CompletionParser()
    for token in row["input_ids"][start:]:
        parser.feed(token)
    reading = parser.finish()
    last_user = max(i for i, m in enumerate(saved.messages) if m.author.role == Role.USER)
    turn = saved.messages[last_user + 1 :]
    # the labelled tokens up to the first call are exactly the first completion: it reads back as sampled
    assert [(m.channel, m.recipient) for m in reading.messages] == [(m.channel, m.recipient) for m in turn[:2]]
    assert [m.content for m in reading.messages] == [m.content for m in turn[:2]]
    assert history_problems(saved.messages) == []


def test_a_compacted_conversation_exports_the_prompt_after_compaction(store):
    script = [final(f"Answer {i}. " + "words " * 600, reasoning=f"think {i}") for i in range(5)]
    backend = ScriptedBackend(script, context_window=8192, max_completion_tokens=1024)
    agent = Agent(backend, date=DATE, history=DropOldestTurns(high=0.3, low=0.2), min_completion_tokens=1024)
    recorder = SessionRecorder(store, agent, model="m", backend="scripted")
    compacted = 0
    for i in range(5):
        recorder.begin_turn(f"Question {i}?")
        for event in agent.stream(f"Question {i}?"):
            compacted += event.type == "compacted"
            recorder.record(event)
    assert compacted >= 1  # the policy dropped old turns as a turn started
    rows, report = export(store, [recorder.session_id])
    assert report.examples == 5
    for row, prompt in zip(rows, backend.prompts, strict=True):
        assert row["input_ids"][: len(prompt)] == prompt
        assert row["meta"]["prompt_tokens"] == len(prompt)


def test_a_compaction_between_turns_is_replayed_before_the_next_turn(store):
    backend = ScriptedBackend([final("One."), final("Two."), final("Three.")])
    agent = Agent(backend, date=DATE)
    recorder = record(agent, store, ["First?", "Second?"])
    event = asyncio.run(agent.compact(forced(DropOldestTurns())))
    assert event is not None
    recorder.record(event)
    recorder.begin_turn("Third?")
    for e in agent.stream("Third?"):
        recorder.record(e)
    rows, _ = export(store, [recorder.session_id])
    assert [r["input_ids"][: len(p)] == p for r, p in zip(rows, backend.prompts, strict=True)] == [True] * 3
    assert "First?" not in get_encoding().decode(rows[2]["input_ids"])


class City(BaseModel):
    name: str
    population: int


def test_a_rejected_structured_answer_is_not_a_target_and_the_retry_is(store):
    def big(city: City) -> City:
        if city.population < 1000:
            raise OutputRetry("that is a village; name a city")
        return city

    backend = ScriptedBackend([final('{"name":"Hum","population":30}'), final('{"name":"Zagreb","population":767131}')])
    agent = Agent(backend, date=DATE, output_type=City, output_validators=[big])
    recorder = record(agent, store, ["A city in Croatia?"])
    saved = store.load(recorder.session_id)
    assert list(saved.errors.values()) == ["answer rejected: that is a village; name a city"]
    rows, report = export(store, [recorder.session_id])
    assert report.skipped == {"the answer was rejected": 1} and len(rows) == 1
    assert rows[0]["input_ids"][: len(backend.prompts[1])] == backend.prompts[1]
    assert "# Response Formats" in get_encoding().decode(rows[0]["input_ids"])
    assert rows[0]["response_format"] and from_chat(rows[0])[0].response_format == rows[0]["response_format"]


def test_failed_tool_calls_are_kept_or_dropped_and_unfinished_turns_skipped(store):
    backend = ScriptedBackend(
        [
            call("functions.get_weather", {"city": "Atlantis"}),
            final("Atlantis has no weather report."),
            call("functions.get_weather", {"city": "Paris"}),
        ]
    )
    agent = Agent(backend, tools=[get_weather], date=DATE, max_steps=1)
    recorder = SessionRecorder(store, agent, model="m", backend="scripted")
    agent.max_steps = 2
    recorder.begin_turn("Weather in Atlantis?")
    for event in agent.stream("Weather in Atlantis?"):
        recorder.record(event)
    agent.max_steps = 1
    recorder.begin_turn("And Paris?")
    with pytest.raises(Exception, match="no final answer"):
        for event in agent.stream("And Paris?"):
            recorder.record(event)
    saved = store.load(recorder.session_id)
    assert any("no such city" in e for e in saved.errors.values())

    rows, report = export(store, [recorder.session_id])
    assert len(rows) == 1 and rows[0]["meta"]["failed_calls"] == 1
    assert report.skipped == {"no final answer": 1}
    rows, report = export(store, [recorder.session_id], drop_failed=True)
    assert rows == [] and report.skipped["a tool call failed (--drop-failed)"] == 1


def test_ratings_since_and_all_choose_the_sessions(store):
    ids = []
    for question in ("What is 2+2?", "Name a prime above 100.", "Capital of Peru?"):
        agent = Agent(ScriptedBackend([final("An answer.")]), date=DATE)
        ids.append(record(agent, store, [question]).session_id)
    store.rate(ids[0], "good")
    store.rate(ids[1][:6], "bad")
    assert store.load(ids[0]).info.rating == "good"
    assert [r["meta"]["session"] for r in export(store, rated="good")[0]] == [ids[0]]
    assert [r["meta"]["session"] for r in export(store, all_sessions=True)[0]] == ids
    rows, report = export(store, all_sessions=True, since="2999-01-01")
    assert rows == [] and report.skipped == {"before --since": 3}
    with pytest.raises(ConfigurationError, match="--all"):
        export(store)
    with pytest.raises(ConfigurationError, match="date like"):
        export(store, all_sessions=True, since="last week")


def test_exact_and_near_duplicates_are_dropped_once_each(store):
    require_extra("finetune", "datasketch")
    questions = [
        "What's the weather like in Paris today?",
        "What's the weather like in Paris today?",  # the same conversation twice: the same tokens
        "what's the weather like in paris today??",  # near: MinHash on the user's text
        "Write a haiku about autumn leaves.",
    ]
    for question in questions:
        agent = Agent(ScriptedBackend([final("Sunny.")]), date=DATE)
        record(agent, store, [question])
    rows, report = export(store, all_sessions=True, near_duplicates=DEFAULT_THRESHOLD)
    assert (report.examples, report.exact_duplicates, report.near_duplicates) == (2, 1, 1)
    assert [r["messages"][0]["content"] for r in rows] == [questions[0], questions[3]]
    rows, report = export(store, all_sessions=True, near_duplicates=None)
    assert (report.examples, report.exact_duplicates, report.near_duplicates) == (3, 1, 0)


def test_broken_text_is_dropped_and_named():
    assert text_problem("Café at 5 ☕") is None
    assert text_problem("Caf\u00c3\u00a9") == "mojibake ('Ã©' is UTF-8 read as Windows-1252)"
    assert "replacement character" in text_problem("bad \ufffd byte")
    assert text_problem("a\ud800b") == "a lone surrogate"
    assert text_problem("bell\x07") == "a control character U+0007"
    assert text_problem("tabs\tand\nnewlines\r\n") is None
    assert text_problem("\ufdd0") == "a noncharacter U+FDD0"


def test_an_example_with_mojibake_in_a_tool_result_is_left_out(store):
    @tool
    def menu() -> str:
        """Today's menu."""
        return "CafÃ© au lait, crÃ¨me brÃ»lÃ©e"

    backend = ScriptedBackend([call("functions.menu", {}), final("Coffee and dessert.")])
    agent = Agent(backend, tools=[menu], date=DATE)
    recorder = record(agent, store, ["What's on the menu?"])
    rows, report = export(store, [recorder.session_id])
    assert rows == [] and report.broken_text == 1
    assert any("broken text: 1" in line for line in report.lines())


def test_report_counts_tokens_tools_and_the_guides_minimum_sizes(store):
    _, backend = two_turn_chain()
    agent = Agent(backend, tools=[get_weather], date=DATE)
    recorder = record(agent, store, ["Weather in Paris?", "And Rome and Oslo?"])
    rows, report = export(store, [recorder.session_id])
    assert report.tokens == sum(len(r["input_ids"]) for r in rows)
    assert report.target_tokens == sum(sum(label != IGNORE for label in r["labels"]) for r in rows)
    assert report.longest == max(len(r["input_ids"]) for r in rows)
    text = "\n".join(report.lines())
    assert "examples: 2 written (from 2 turns of 1 sessions)" in text
    assert "tool calls: functions.get_weather 3" in text
    assert "at least 1,000 for FAQ-style tasks, 3,000 for technical generation, 10,000 for multi-step" in text
    assert json.loads(json.dumps(report.to_dict()))["calls"] == {"functions.get_weather": 3}


def test_sessions_from_before_prompt_settings_were_stored(store):
    """Without tools the stored digest proves the rebuilt header exact; with tools the session is skipped."""
    plain = record(Agent(ScriptedBackend([final("Hi.")]), date=DATE), store, ["Hello?"]).session_id
    tooled = record(
        Agent(ScriptedBackend([final("Hi.")]), tools=[get_weather], date=DATE), store, ["Hello there?"]
    ).session_id
    db = store._conn()
    db.execute("DELETE FROM prompts")
    rows, report = export(store, [plain, tooled])
    assert [r["meta"]["session"] for r in rows] == [plain]
    assert report.skipped == {"saved before sessions kept their prompt settings (tools unknown)": 1}


def test_an_old_database_gains_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL, title TEXT,
                               turns INTEGER NOT NULL DEFAULT 0, settings TEXT NOT NULL);
        CREATE TABLE messages (session_id TEXT NOT NULL, seq INTEGER NOT NULL, created_at REAL NOT NULL,
                               role TEXT NOT NULL, channel TEXT, body TEXT NOT NULL, PRIMARY KEY (session_id, seq));
        INSERT INTO sessions VALUES ('abc123', 1.0, 1.0, 'old', 1, '{}');
    """)
    db.close()
    store = SessionStore(path)
    assert store.rate("abc", "good") == "abc123"
    store.append("abc123", Message.from_role_and_content(Role.USER, "hi"), error=None)
    assert store.load("abc123").info.rating == "good"
    store.close()


def test_follow_ups_are_judged_with_their_conversation(store):
    """ "Thanks!" after different questions is no duplicate; a session's own turns never count as duplicates."""
    require_extra("finetune", "datasketch")
    for question in ("What's the weather like in Paris today?", "Write a haiku about autumn leaves."):
        agent = Agent(ScriptedBackend([final("Done."), final("You are welcome.")]), date=DATE)
        record(agent, store, [question, "Thanks!"])
    agent = Agent(ScriptedBackend([final("Sunny."), final("Still sunny.")]), date=DATE)
    record(agent, store, ["Is it sunny in Rome right now?", "Is it sunny in Rome right now??"])
    _, report = export(store, all_sessions=True, near_duplicates=DEFAULT_THRESHOLD)
    assert (report.examples, report.near_duplicates) == (6, 0)
    agent = Agent(ScriptedBackend([final("Done."), final("You're welcome.")]), date=DATE)
    record(agent, store, ["what's the weather like in Paris today", "thanks!"])  # the first conversation again
    _, report = export(store, all_sessions=True, near_duplicates=DEFAULT_THRESHOLD)
    assert (report.examples, report.near_duplicates) == (6, 2)
