"""Structured output with ScriptedBackend and the fake Ollama: response format, validation, retries, validators."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from typing import Literal

import pytest
from fake_ollama import FakeOllama, final_text, respx_ollama
from openai_harmony import Role
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from agent import Agent
from agent.backends import ScriptedBackend, call, final
from agent.backends.ollama import OllamaBackend
from agent.errors import ConfigurationError, OutputRetry, OutputValidationError
from agent.events import RunFinished, StepFinished, TextDelta, event_to_dict
from agent.output import OutputSpec
from tools.function import tool

DATE = "2026-01-01"


class ShoppingList(BaseModel):
    """A list of items to buy"""

    items: list[str] = Field(description="entries on the shopping list")


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Size(TypedDict):
    width: int
    height: int


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


def structured(body: str, reasoning: str = "Answer in the format.") -> str:
    """A completion as gpt-oss writes a structured final answer."""
    return (
        f"<|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant"
        f"<|channel|>final <|constrain|>json<|message|>{body}<|return|>"
    )


def developer_message(prompt: str) -> str:
    start = prompt.index("<|start|>developer<|message|>")
    return prompt[start : prompt.index("<|end|>", start) + len("<|end|>")]


def test_valid_answer_parses_into_the_model():
    backend = ScriptedBackend([structured('{"name": "Ada", "age": 36}')])
    result = Agent(backend, date=DATE).run("Who?", output_type=Person)
    assert isinstance(result.output, Person)
    assert result.output == Person(name="Ada", age=36)
    assert result.raw_output == '{"name": "Ada", "age": 36}'
    assert result.messages[-1].channel == "final" and result.messages[-1].content_type == "<|constrain|>json"
    assert backend.requests[0].final_schema == Person.model_json_schema()
    backend.assert_complete()


def test_developer_message_shows_the_response_format_as_harmony_writes_it():
    backend = ScriptedBackend([structured('{"items": ["milk"]}')])
    Agent(backend, date=DATE, instructions="Be brief.").run("List", output_type=ShoppingList)
    schema = (
        '{"properties":{"items":{"description":"entries on the shopping list","items":{"type":"string"},'
        '"type":"array"}},"required":["items"],"type":"object"}'
    )
    assert developer_message(backend.prompt_texts[0]) == (
        "<|start|>developer<|message|># Instructions\n\nBe brief.\n\n# Response Formats\n\n"
        f"## shopping_list\n\n// A list of items to buy\n{schema}<|end|>"
    )


def test_response_format_alone_makes_a_developer_message_and_follows_the_tools():
    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "x"

    backend = ScriptedBackend([structured('{"x": 1, "y": 2}'), final("plain")])
    agent = Agent(backend, date=DATE, tools=[lookup])
    agent.run("Where?", output_type=Point)
    developer = developer_message(backend.prompt_texts[0])
    assert developer.index("# Tools") < developer.index("# Response Formats\n\n## point\n\n{")
    assert developer.endswith('"required":["x","y"],"type":"object"}<|end|>')
    assert agent.run("And now?").output == "plain"  # the next plain run has no response format
    assert "# Response Formats" not in backend.prompt_texts[1]
    assert backend.requests[1].final_schema is None

    bare = ScriptedBackend([structured('{"x": 1, "y": 2}')])
    Agent(bare, date=DATE).run("Where?", output_type=Point)
    assert developer_message(bare.prompt_texts[0]).startswith(
        "<|start|>developer<|message|># Response Formats\n\n## point\n\n"
    )


def test_schema_constraints_move_into_descriptions_but_are_still_validated():
    text = OutputSpec.of(Person).format_text()  # type: ignore[union-attr]
    schema = json.loads(text.splitlines()[-1])
    assert schema["properties"]["age"] == {"type": "integer", "description": "Minimum 0; maximum 150"}
    backend = ScriptedBackend([structured('{"name": "Old", "age": 200}'), structured('{"name": "Old", "age": 99}')])
    result = Agent(backend, date=DATE).run("Who?", output_type=Person)
    assert result.output.age == 99
    assert "age: Input should be less than or equal to 150" in backend.prompt_texts[1]


@pytest.mark.parametrize(
    ("output_type", "raw", "expected"),
    [
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Size, '{"width": 3, "height": 4}', {"width": 3, "height": 4}),
        (list[Point], '[{"x": 1, "y": 2}, {"x": 3, "y": 4}]', [Point(1, 2), Point(3, 4)]),
        (Literal["yes", "no"], '"no"', "no"),
        (Colour, '"green"', Colour.GREEN),
        (int, " 42 ", 42),
    ],
)
def test_every_kind_of_output_type_validates(output_type, raw, expected):
    backend = ScriptedBackend([structured(raw)])
    result = Agent(backend, date=DATE).run("?", output_type=output_type)
    assert result.output == expected and type(result.output) is type(expected)
    assert "# Response Formats" in backend.prompt_texts[0]


def test_str_output_type_keeps_plain_text_answers():
    backend = ScriptedBackend([final("Just text."), final("Again.")])
    agent = Agent(backend, date=DATE, output_type=str)
    assert agent.run("Hi").output == "Just text."
    assert agent.run("Hi", output_type=str).output == "Again."
    assert "# Response Formats" not in backend.prompt_texts[0] and "<|start|>developer" not in backend.prompt_texts[0]


def test_invalid_answer_is_retried_with_the_error_shown_to_the_model():
    backend = ScriptedBackend([structured('{"name": "Ada"}'), structured('{"name": "Ada", "age": 36}')])
    agent = Agent(backend, date=DATE, output_type=Person)
    events = list(agent.stream("Who?"))
    result = next(e for e in events if isinstance(e, RunFinished)).result
    assert result.output == Person(name="Ada", age=36)
    retry_prompt = backend.prompt_texts[1]
    assert 'final <|constrain|>json<|message|>{"name": "Ada"}<|end|>' in retry_prompt  # the rejected answer stays
    feedback = retry_prompt.split("<|start|>user<|message|>")[-1]
    assert feedback.startswith("Your answer does not match the person response format:\n- age: Field required")
    assert retry_prompt.endswith("<|end|><|start|>assistant")
    steps = [e for e in events if isinstance(e, StepFinished)]
    assert [s.outcome for s in steps] == ["retry", "final"]
    assert steps[0].error is not None and "age: Field required" in steps[0].error
    assert [m.author.role for m in result.messages].count(Role.USER) == 2
    texts = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert texts == '{"name": "Ada"}{"name": "Ada", "age": 36}'  # the answer text streams as it comes


def test_answer_that_is_not_json_gets_a_json_error():
    backend = ScriptedBackend([structured("Ada, 36"), structured('{"name": "Ada", "age": 36}')])
    result = Agent(backend, date=DATE).run("Who?", output_type=Person)
    assert result.output.name == "Ada"
    assert "Your answer is not valid JSON (Expecting value at character 0)" in backend.prompt_texts[1]


def test_an_answer_that_stays_invalid_raises_output_validation_error():
    backend = ScriptedBackend([structured('{"name": 1}')] * 3)
    agent = Agent(backend, date=DATE, output_type=Person, output_retries=2)
    with pytest.raises(OutputValidationError) as info:
        agent.run("Who?")
    assert info.value.raw == '{"name": 1}'
    errors = {(tuple(e["loc"]), e["type"]) for e in info.value.errors}
    assert errors == {(("name",), "string_type"), (("age",), "missing")}
    assert "did not validate as person 3 times" in str(info.value)
    backend.assert_complete()


def test_output_retries_zero_fails_on_the_first_invalid_answer():
    backend = ScriptedBackend([structured("[]")])
    with pytest.raises(OutputValidationError):
        Agent(backend, date=DATE, output_retries=0).run("?", output_type=Point)


def test_output_validator_feedback_is_a_retry_and_its_result_is_the_output():
    seen: list[Person] = []

    def adult(person: Person) -> Person:
        seen.append(person)
        if person.age < 18:
            raise OutputRetry(f"{person.name} is {person.age}; pick an adult")
        return person.model_copy(update={"name": person.name.upper()})

    async def checked(person: Person) -> None:  # returning None keeps the value
        await asyncio.sleep(0)

    backend = ScriptedBackend([structured('{"name": "Kid", "age": 9}'), structured('{"name": "Ada", "age": 36}')])
    agent = Agent(backend, date=DATE, output_type=Person, output_validators=[adult, checked])
    result = agent.run("Who?")
    assert result.output == Person(name="ADA", age=36)
    assert result.raw_output == '{"name": "Ada", "age": 36}'
    assert [p.name for p in seen] == ["Kid", "Ada"]
    assert backend.prompt_texts[1].endswith("<|start|>user<|message|>Kid is 9; pick an adult<|end|><|start|>assistant")


def test_tool_calls_before_the_structured_answer_work_as_usual():
    @tool
    def age_of(name: str) -> int:
        """The age of a person."""
        return 36

    backend = ScriptedBackend([call("functions.age_of", {"name": "Ada"}), structured('{"name": "Ada", "age": 36}')])
    result = Agent(backend, date=DATE, tools=[age_of]).run("How old is Ada?", output_type=Person)
    assert result.output.age == 36 and result.tool_calls[0].output == "36"
    assert all(r.final_schema == Person.model_json_schema() for r in backend.requests)


def test_run_result_serialises_the_object_for_json_events():
    backend = ScriptedBackend([structured('{"name": "Ada", "age": 36}')])
    events = list(Agent(backend, date=DATE).stream("Who?", output_type=Person))
    done = event_to_dict(events[-1])
    assert done["result"]["output"] == {"name": "Ada", "age": 36}
    assert done["result"]["raw_output"] == '{"name": "Ada", "age": 36}'
    json.dumps(done)


def test_arun_takes_the_output_type_too():
    backend = ScriptedBackend([structured('["a", "b"]')])
    result = asyncio.run(Agent(backend, date=DATE).arun("?", output_type=list[str]))
    assert result.output == ["a", "b"]


def test_a_type_pydantic_cannot_read_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="output_type"):
        Agent(ScriptedBackend([]), output_type=object())


def test_fake_ollama_validation_feedback_is_the_guarantee():
    answers = [final_text('{"items": "milk"}'), final_text('{"items": ["milk", "eggs"]}')]
    fake = FakeOllama(answers)
    with respx_ollama(fake):
        agent = Agent(OllamaBackend(model="gpt-oss:20b", host="http://127.0.0.1:11434"), date=DATE)
        result = agent.run("What do I buy?", output_type=ShoppingList)
    assert result.output == ShoppingList(items=["milk", "eggs"])
    first, second = fake.generate_requests
    assert "format" not in first and "format" not in second  # raw Harmony; Ollama cannot constrain it
    assert "# Response Formats\n\n## shopping_list" in first["prompt"]
    assert "items: Input should be a valid list" in second["prompt"].split("<|start|>user<|message|>")[-1]


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_final_watch_canonicalises_the_final_header_and_passes_everything_else(chunk):
    from agent.backends._final import FINAL_HEADER, FinalWatch
    from agent.harmony.encoding import get_encoding

    enc = get_encoding()
    cases = {
        "<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>final<|message|>no": (
            True,
            f"<|channel|>analysis<|message|>hm<|end|><|start|>assistant{FINAL_HEADER}",
        ),
        "<|channel|>final <|constrain|>json<|message|>{}": (True, FINAL_HEADER),
        "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>": (
            False,
            "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>",
        ),
        "<|channel|>commentary<|message|>Looking.<|end|>": (False, "<|channel|>commentary<|message|>Looking.<|end|>"),
    }
    for text, (opened, passed) in cases.items():
        ids, watch, out = enc.encode(text, allowed_special="all"), FinalWatch(), []
        for start in range(0, len(ids), chunk):
            out += watch.feed(ids[start : start + chunk])
        assert watch.opened is opened and enc.decode(out) == passed


def test_stream_yields_partial_objects_as_the_json_arrives_then_the_final_one():
    from agent.events import PartialOutput

    class Tags(BaseModel):
        tags: list[str]

    backend = ScriptedBackend([structured('{"tags": ["red", "green", "blue"]}')], chunk_size=2)
    events = list(Agent(backend, date=DATE).stream("Tags?", output_type=Tags))
    partials = [e.output for e in events if isinstance(e, PartialOutput)]
    assert partials[-1] == Tags(tags=["red", "green", "blue"])
    assert all(isinstance(p, Tags) for p in partials) and len(partials) >= 3
    assert [len(p.tags) for p in partials] == sorted(len(p.tags) for p in partials)  # they only grow
    assert any(p.tags and p.tags[-1] not in ("red", "green", "blue") for p in partials)  # a string still arriving
    assert events.index(next(e for e in events if isinstance(e, PartialOutput))) < len(events) - 3
    assert events[-1].result.output == partials[-1]  # type: ignore[union-attr]
    plain = list(Agent(ScriptedBackend([final('{"tags": []}')]), date=DATE).stream("?"))
    assert not any(isinstance(e, PartialOutput) for e in plain)
