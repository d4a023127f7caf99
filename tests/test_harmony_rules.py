"""The reading rules of `agent/harmony/header.py` and `parse.py`, each with variants of its own.

The real-output corpus (`test_realformat.py`) holds the cases other projects
collected; these are new variants of the same classes (other tools, lengths,
scripts and emoji, token ids and text), so the rules are tested, not the
cases. Every variant runs twice: as token ids through `ScriptedBackend`, and as
text through the Ollama backend against the fake server (which drops the final
stop token, as raw mode does). After each, the history passes the invariant
checker and every prompt the agent sent parses with openai-harmony's strict
parser.
"""

from __future__ import annotations

import json

import pytest
from fake_ollama import FakeOllama, final_text, respx_ollama
from openai_harmony import Role
from realformat import RecordingFunction, assert_history_ok, assert_prompts_strict

from agent import Agent
from agent.backends import ScriptedBackend, final
from agent.backends.ollama import OllamaBackend
from agent.errors import ModelOutputError
from agent.harmony.encoding import get_encoding, special_ids
from agent.harmony.parse import message_text
from tools.base import ToolCall

CLOSING = "Closing answer."
VIA = ["ids", "text"]


def run(raw: str, tools: tuple[str, ...] = (), via: str = "ids", *, retries: int = 2):
    """One user turn whose first completion is `raw`; the next one answers CLOSING."""
    calls: list[ToolCall] = []
    functions = [RecordingFunction(name, calls) for name in tools]
    if via == "ids":
        backend = ScriptedBackend([raw, final(CLOSING)])
        agent = Agent(backend=backend, tools=functions, date="2026-01-15", output_retries=retries)
        result = agent.run("Go.")
        assert_prompts_strict(backend.prompts)
    else:
        fake = FakeOllama([raw, final_text(CLOSING)])
        with respx_ollama(fake):
            agent = Agent(
                backend=OllamaBackend(host="http://127.0.0.1:11434"),
                tools=functions,
                date="2026-01-15",
                output_retries=retries,
            )
            result = agent.run("Go.")
        enc = get_encoding()
        assert_prompts_strict([enc.encode(r["prompt"], allowed_special="all") for r in fake.generate_requests])
    assert_history_ok(agent)
    return agent, result, calls


def channel_texts(result, channel: str) -> list[str]:
    return [
        message_text(m)
        for m in result.messages
        if m.author.role == Role.ASSISTANT and m.channel == channel and not m.recipient
    ]


def assert_answer(result, calls, text: str, reasoning: list[str] | None = None) -> None:
    assert result.output == text
    assert calls == []
    assert [s.outcome for s in result.steps] == ["final"]
    if reasoning is not None:
        assert channel_texts(result, "analysis") == reasoning


def assert_called(result, calls, expected: list[tuple[str, object]]) -> None:
    got = [(c.name, json.loads(c.arguments) if c.arguments.strip() else "") for c in calls]
    assert got == expected
    assert result.output == CLOSING


def assert_refused(result, calls) -> None:
    """Nothing was run and nothing from the completion became the answer: it was sampled again."""
    assert calls == []
    assert result.steps[0].outcome == "retry" and result.steps[0].error
    assert result.output == CLOSING


# -- H11: `<|message|>` with no channel is the answer (Ollama); R4: neither is unusable ------------------


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("raw", "answer", "reasoning"),
    [
        ("<|message|>Hej, världen! 👋<|end|>", "Hej, världen! 👋", []),
        (
            "<|channel|>analysis<|message|>Denke nach.<|end|><|start|>assistant<|message|>Antwort: 42<|return|>",
            "Antwort: 42",
            ["Denke nach."],
        ),
        ("<|start|>assistant<|message|>你好，世界<|end|>", "你好，世界", []),
    ],
)
def test_a_message_without_a_channel_is_the_answer(raw, answer, reasoning, via):
    _, result, calls = run(raw, via=via)
    assert_answer(result, calls, answer, reasoning)


@pytest.mark.parametrize("via", VIA)
def test_a_message_with_neither_channel_nor_message_is_unusable(via):
    _, result, calls = run("Just some words<|end|>", via=via)
    assert_refused(result, calls)
    assert "Just some words" not in str([message_text(m) for m in result.messages])


# -- P6: special tokens stripped by the server, or bare text ------------------------------------------


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("raw", "answer", "reasoning"),
    [
        (
            "analysisUser greets in Japanese. Reply in kind.assistantfinalこんにちは！",
            "こんにちは！",
            ["User greets in Japanese. Reply in kind."],
        ),
        (
            'analysis"Ping" means they test me.\nKeep it short.assistantfinalPong 🏓',
            "Pong 🏓",
            ['"Ping" means they test me.\nKeep it short.'],
        ),
        (
            "analysisFirst thought.assistantanalysisSecond thought.assistantfinal3",
            "3",
            ["First thought.", "Second thought."],
        ),
        ("The capital of Norway is Oslo.", "The capital of Norway is Oslo.", []),
        ("analysis of the logs shows no errors.", "analysis of the logs shows no errors.", []),  # prose, not a marker
        ("finally, it works", "finally, it works", []),
        ('{"status": "ok", "count": 12}', '{"status": "ok", "count": 12}', []),
    ],
)
def test_stripped_markers_give_the_reasoning_and_the_answer(raw, answer, reasoning, via):
    _, result, calls = run(raw, via=via)
    assert_answer(result, calls, answer, reasoning)


@pytest.mark.parametrize("via", VIA)
def test_stripped_preamble_then_answer(via):
    _, result, calls = run("analysisLook it up.assistantcommentaryChecking now.assistantfinalIt is 12 °C.", via=via)
    assert_answer(result, calls, "It is 12 °C.", ["Look it up."])
    assert channel_texts(result, "commentary") == ["Checking now."]


@pytest.mark.parametrize("via", VIA)
def test_a_stripped_call_is_never_run(via):
    raw = 'analysisNeed the weather.assistantcommentary to=functions.get_weather json{"city":"Oslo"}'
    _, result, calls = run(raw, ("get_weather",), via)
    assert_refused(result, calls)
    assert "special tokens" in result.steps[0].error


def test_stripped_calls_end_in_model_output_error_with_a_hint():
    raw = 'analysisNeed it.assistantcommentary to=functions.get_weather json{"city":"Oslo"}'
    backend = ScriptedBackend([raw] * 3)
    agent = Agent(backend=backend, tools=[RecordingFunction("get_weather", [])], date="2026-01-15")
    with pytest.raises(ModelOutputError, match="--special"):
        agent.run("Go.")
    assert_history_ok(agent)


@pytest.mark.parametrize("via", VIA)
def test_stripped_reasoning_alone_lets_the_model_go_on(via):
    _, result, calls = run("analysisStill thinking about the request", via=via)
    assert calls == [] and result.output == CLOSING
    assert [s.outcome for s in result.steps] == ["continue", "final"]
    assert "Still thinking about the request" in channel_texts(result, "analysis")


# -- P3: `<|start|>` missing between two messages (vLLM) --------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_a_call_after_a_missing_start_is_read(via):
    raw = (
        "<|channel|>analysis<|message|>Plan: look it up.<|end|><|channel|>commentary to=functions.lookup "
        '<|constrain|>json<|message|>{"q": "Zürich"}<|call|>'
    )
    _, result, calls = run(raw, ("lookup",), via)
    assert_called(result, calls, [("lookup", {"q": "Zürich"})])
    assert channel_texts(result, "analysis")[0] == "Plan: look it up."


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("between", ["", "assistant", "\n"])
def test_an_answer_after_a_missing_start_is_read(between, via):
    raw = f"<|channel|>analysis<|message|>Короче.<|end|>{between}<|channel|>final<|message|>Ответ: да<|return|>"
    _, result, calls = run(raw, via=via)
    assert_answer(result, calls, "Ответ: да", ["Короче."])


@pytest.mark.parametrize("via", VIA)
def test_other_text_between_messages_stops_the_reading(via):
    raw = "<|channel|>analysis<|message|>Sum is 9.<|end|>Okay then.<|start|>assistant<|channel|>final<|message|>9<|return|>"
    _, result, calls = run(raw, via=via)
    assert_refused(result, calls)
    assert channel_texts(result, "analysis")[0] == "Sum is 9."  # what came before is kept


# -- P5 / H8: text before the first `<|start|>`, an empty role, a lone `<|end|>` -------------------------


@pytest.mark.parametrize("via", VIA)
def test_text_before_the_first_start_is_a_preamble(via):
    raw = (
        "Checking the calendar…<|start|>assistant<|channel|>commentary to=functions.calendar "
        '<|constrain|>json<|message|>{"day": "mañana"}<|call|>'
    )
    _, result, calls = run(raw, ("calendar",), via)
    assert_called(result, calls, [("calendar", {"day": "mañana"})])
    assert channel_texts(result, "commentary")[0] == "Checking the calendar…"


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    "raw",
    [
        "<|start|><|channel|>final<|message|>Done.<|return|>",
        "<|end|><|start|><|channel|>final<|message|>Done.<|end|>",
        "<|end|><|start|><|channel|>analysis<|message|>ok<|end|><|start|><|channel|>final<|message|>Done.",
    ],
)
def test_an_empty_role_is_the_assistant(raw, via):
    _, result, calls = run(raw, via=via)
    assert_answer(result, calls, "Done.")


# -- H9 / H10: extra words in a header --------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    "raw",
    [
        '<|channel|>commentary to=functions.lookup extra<|message|>{"q": 1}<|call|>',
        ' to=functions.lookup xyz<|channel|>commentary<|message|>{"q": 1}<|call|>',
        '<|channel|>commentaryx to=functions.lookup <|constrain|>json<|message|>{"q": 1}<|call|>',
    ],
)
def test_one_extra_word_beside_the_recipient_is_ignored(raw, via):
    agent, result, calls = run(raw, ("lookup",), via)
    assert_called(result, calls, [("lookup", {"q": 1})])
    call = next(m for m in agent.history if m.recipient)
    assert call.content_type in (None, "<|constrain|>json") and call.channel == "commentary"


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("channel", ["final?", "finalx", "final:"])
def test_junk_glued_to_the_final_channel(channel, via):
    raw = (
        f"<|channel|>analysis<|message|>Capital.<|end|><|start|>assistant<|channel|>{channel}<|message|>Oslo.<|return|>"
    )
    _, result, calls = run(raw, via=via)
    assert_answer(result, calls, "Oslo.", ["Capital."])


# -- R1-R3: what openai-harmony rejects is never run and never answered ----------------------------------


REJECTED = {
    "two recipients": "<|channel|>commentary to=functions.lookup to=functions.delete_all <|constrain|>json"
    '<|message|>{"all": true}<|call|>',
    "to=assistant and a recipient": "<|channel|>commentary to=assistant to=functions.delete_all<|message|>{}<|call|>",
    "recipients on both sides": " to=functions.lookup<|channel|>commentary to=functions.delete_all<|message|>{}<|call|>",
    "two words after the recipient": "<|channel|>commentary to=functions.delete_all json extra<|message|>{}<|call|>",
    "call header cut by the end": "<|channel|>analysis<|message|>Going.<|end|><|start|>assistant<|channel|>commentary "
    "to=functions.delete_all",
    "garbled header cut by the end": "<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>commentary "
    "t\no= delete code",
    "garbled header ended": "<|channel|>commentary t o= delete code<|end|>",
    "call without <|message|>": "<|channel|>commentary to=functions.delete_all<|call|>",
    "commentary word without to=": '<|channel|>commentary delete_all<|message|>{"all": true}<|call|>',
}


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("raw", REJECTED.values(), ids=REJECTED.keys())
def test_what_harmony_rejects_is_never_acted_on(raw, via):
    _, result, calls = run(raw, ("lookup", "delete_all"), via)
    assert_refused(result, calls)
    shown = channel_texts(result, "final") + channel_texts(result, "commentary")
    assert shown == [CLOSING]


@pytest.mark.parametrize("raw", REJECTED.values(), ids=REJECTED.keys())
def test_rejected_output_ends_in_model_output_error(raw):
    backend = ScriptedBackend([raw] * 3)
    calls: list[ToolCall] = []
    agent = Agent(
        backend=backend,
        tools=[RecordingFunction("lookup", calls), RecordingFunction("delete_all", calls)],
        date="2026-01-15",
        output_retries=2,
    )
    with pytest.raises(ModelOutputError, match="3 times in a row"):
        agent.run("Go.")
    assert calls == []
    assert_history_ok(agent)
    assert_prompts_strict(backend.prompts)


# -- Repairs peers make, only onto offered tools -----------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("payload", "arguments"),
    [
        ('"{\\"city\\": \\"Oslo\\"}"', {"city": "Oslo"}),  # a JSON string holding JSON
        ('"{\\"tags\\": [\\"a\\", \\"ü\\"]}"', {"tags": ["a", "ü"]}),
        ('{"query": \\"Grüße\\"}', {"query": "Grüße"}),  # quotes escaped outside a string
        ('```json\n{"city": "Lyon"}\n```', {"city": "Lyon"}),  # in a code fence
        ('Here you go: {"city": "Kraków", "days": 3}', {"city": "Kraków", "days": 3}),  # words before it
    ],
)
def test_arguments_that_peers_repair(payload, arguments, via):
    raw = f"<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{payload}<|call|>"
    _, result, calls = run(raw, ("lookup",), via)
    assert_called(result, calls, [("lookup", arguments)])


@pytest.mark.parametrize("via", VIA)
def test_a_recipient_glued_to_json_names_the_offered_tool(via):
    agent, result, calls = run(
        '<|channel|>commentary to=functions.lookupjson<|message|>{"q": "x"}<|call|>', ("lookup",), via
    )
    assert_called(result, calls, [("lookup", {"q": "x"})])
    call = next(m for m in agent.history if m.recipient)
    assert call.recipient == "functions.lookup" and call.content_type == "<|constrain|>json"


@pytest.mark.parametrize("via", VIA)
def test_no_glue_repair_onto_a_tool_that_is_not_offered(via):
    # `to_json` is offered under its own name; `shelljson` names nothing and `shell` is not offered
    agent, result, calls = run(
        '<|channel|>commentary to=functions.to_json<|message|>{"v": 1}<|call|>', ("to_json",), via
    )
    assert_called(result, calls, [("to_json", {"v": 1})])
    agent, result, calls = run(
        '<|channel|>commentary to=functions.shelljson<|message|>{"c": "ls"}<|call|>', ("lookup",), via
    )
    assert calls == []
    (reply,) = [m for m in agent.history if m.author.role == Role.TOOL]
    assert "unknown tool 'functions.shelljson'" in message_text(reply)


# -- P2: several complete calls in one completion (a server that ignores the stop set) -------------------


TWO_CALLS = (
    "<|channel|>analysis<|message|>Two lookups.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.a <|constrain|>json<|message|>{"n": 1}<|call|><|start|>assistant<|channel|>commentary '
    'to=functions.b <|constrain|>json<|message|>{"n": "二"}<|call|>'
)
INVENTED = (
    '<|start|>functions.b to=assistant<|channel|>commentary<|message|>{"fake": true}<|end|>'
    "<|start|>assistant<|channel|>final<|message|>Invented answer.<|return|>"
)


@pytest.mark.parametrize(
    "tail",
    [
        "",
        INVENTED,
        "<|start|>assistant<|channel|>analysis<|message|>Now b said…<|end|>",
        "commentary" + TWO_CALLS.split("<|start|>assistant", 2)[2],
    ],
)
def test_every_call_of_one_completion_runs_in_order(tail):
    calls: list[ToolCall] = []
    backend = ScriptedBackend([TWO_CALLS + tail, final(CLOSING)], honour_stops=False)
    agent = Agent(
        backend=backend, tools=[RecordingFunction("a", calls), RecordingFunction("b", calls)], date="2026-01-15"
    )
    result = agent.run("Go.")
    expected = [("a", {"n": 1}), ("b", {"n": "二"})] + ([("b", {"n": "二"})] if tail.startswith("commentary") else [])
    assert [(c.name, json.loads(c.arguments)) for c in calls] == expected
    assert result.output == CLOSING and "Invented" not in str(agent.history)
    assert [s.outcome for s in result.steps] == ["tool_call", "final"]
    assert_history_ok(agent)
    assert_prompts_strict(backend.prompts)


def test_calls_of_one_completion_leave_the_prompt_two_passes_would():
    """The history after one completion with two calls is the one a server that stops at each call gives."""
    outs = []
    for script, stops in (
        ([TWO_CALLS, final(CLOSING)], False),
        ([TWO_CALLS.rsplit("<|start|>", 1)[0], TWO_CALLS.rsplit("<|start|>", 1)[1], final(CLOSING)], True),
    ):
        backend = ScriptedBackend(script, honour_stops=stops)
        agent = Agent(
            backend=backend, tools=[RecordingFunction("a", []), RecordingFunction("b", [])], date="2026-01-15"
        )
        agent.run("Go.")
        outs.append((backend.prompts[-1], [(m.author.role, m.recipient, message_text(m)) for m in agent.history]))
    assert outs[0] == outs[1]


def test_a_cut_call_after_a_complete_one_is_dropped():
    calls: list[ToolCall] = []
    raw = TWO_CALLS.rsplit("<|call|>", 1)[0][:-3]  # the second call's JSON is cut
    backend = ScriptedBackend([raw, final(CLOSING)], honour_stops=False)
    agent = Agent(
        backend=backend, tools=[RecordingFunction("a", calls), RecordingFunction("b", calls)], date="2026-01-15"
    )
    assert agent.run("Go.").output == CLOSING
    assert [c.name for c in calls] == ["a"]
    assert_history_ok(agent)
    assert_prompts_strict(backend.prompts)


# -- The safety property, over every header built from the pieces gpt-oss slips with ----------------------


def test_no_header_harmony_rejects_becomes_a_call_or_an_answer():
    """For every combination of header pieces: if openai-harmony (strict or not) cannot read the header, the
    reader raises `HeaderError`, or reads it without a recipient on a channel that only thinks."""
    import itertools

    from openai_harmony import HarmonyError, StreamableParser

    from agent.harmony.header import HeaderError, read_header

    enc = get_encoding()
    pieces = [
        "<|channel|>commentary",
        "<|channel|>final",
        "<|channel|>analysis",
        " to=functions.f",
        " to=assistant",
        " to=g",
        " <|constrain|>json",
        " json",
        " code",
        " junk",
        " to=functions.h",
    ]

    def harmony_reads(text: str) -> bool:
        parser = StreamableParser(enc, Role.ASSISTANT, strict=False)
        try:
            for token in enc.encode(text + "<|message|>{}", allowed_special="all") + [special_ids().call]:
                parser.process(token)
            return True
        except HarmonyError:
            return False

    checked = 0
    for n in (1, 2, 3, 4):
        for combo in itertools.permutations(pieces, n):
            text = "".join(combo)
            try:
                header = read_header(text, lambda r: r if r.startswith("functions.") else None)
            except HeaderError:
                continue
            checked += 1
            if not harmony_reads(text):
                assert header.recipient is None and header.channel != "commentary", text
    assert checked > 400  # headers the reader accepts, each held against harmony
