"""`@tool`: schemas from hints and docstrings, cleaned for Harmony; validation; output formatting."""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal, Optional

import pydantic
import pytest
from openai_harmony import DeveloperContent, Message, Role

from agent.errors import ConfigurationError, ToolRetry
from agent.harmony.encoding import get_encoding
from tools import FunctionTool, ToolRegistry, tool
from tools.function import format_output
from tools.schema import clean_schema
from helpers import golden


def rendered(*tools: FunctionTool) -> str:
    content = DeveloperContent.new().with_function_tools([t.tool_description() for t in tools])
    return get_encoding().decode(get_encoding().render(Message.from_role_and_content(Role.DEVELOPER, content)))


def test_google_docstring():
    @tool
    def search(query: str, limit: int = 5) -> list:
        """Search the notes.

        Longer explanation line.

        Args:
            query: What to look for.
            limit: How many results
                to return at most.

        Returns:
            Matching notes.
        """

    assert search.description == "Search the notes.\n\nLonger explanation line."
    props = search.parameters["properties"]
    assert props["query"]["description"] == "What to look for."
    assert props["limit"] == {"type": "integer", "default": 5, "description": "How many results to return at most."}
    assert search.parameters["required"] == ["query"]


def test_numpy_docstring():
    @tool
    def scale(value: float, factor: float = 2.0) -> float:
        """Scale a value.

        Parameters
        ----------
        value : float
            The input.
        factor : float
            Multiplier.
        """

    assert scale.description == "Scale a value."
    assert scale.parameters["properties"]["value"]["description"] == "The input."
    assert scale.parameters["properties"]["factor"]["description"] == "Multiplier."


def test_sphinx_docstring():
    @tool
    def greet(name: str) -> str:
        """Say hello.

        :param name: Who to greet.
        :returns: A greeting.
        """

    assert greet.description == "Say hello."
    assert greet.parameters["properties"]["name"]["description"] == "Who to greet."


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    city: str = pydantic.Field(description="City name")


class Person(pydantic.BaseModel):
    name: str
    address: Address
    friends: list[str] = []


def test_complex_schema_renders_without_any():
    @tool
    def register(
        person: Person,
        color: Color,
        mode: Literal["fast", "slow"] = "fast",
        note: Optional[str] = None,
        priority: Literal[1, 2, 3] = 1,
        tags: list[str] | None = None,
        ratio: float = pydantic.Field(0.5, ge=0, le=1),
    ) -> str:
        """Register a person.

        Args:
            person: The person.
            color: Favourite colour.
            mode: Processing mode.
            note: Optional note.
            priority: Priority level.
            tags: Labels.
            ratio: A fraction.
        """

    text = rendered(register)
    assert ": any" not in text and "any[]" not in text
    assert text.count("=> any;") == 1  # the return type, which Harmony always renders as any
    golden("register_tool.txt", text)


def test_clean_schema_rules():
    schema = {
        "type": "object",
        "title": "X",
        "properties": {
            "a": {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "A"},
            "b": {"const": "fixed"},
            "c": {"enum": ["x", "y"]},
            "d": {"type": ["string", "null"], "enum": ["p", None]},
            "e": {"type": "string", "minLength": 2, "pattern": "^a"},
            "f": {"type": "object", "additionalProperties": {"type": "integer"}},
            "g": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "h": {"allOf": [{"$ref": "#/$defs/Inner"}], "description": "inner thing"},
        },
        "$defs": {"Inner": {"type": "object", "properties": {"z": {"type": "string"}}}},
    }
    out = clean_schema(schema)
    p = out["properties"]
    assert "title" not in out and p["a"] == {"type": "integer"}
    assert p["b"] == {"enum": ["fixed"], "type": "string"}
    assert p["c"] == {"enum": ["x", "y"], "type": "string"}
    assert p["d"] == {"type": "string", "enum": ["p"]}
    assert p["e"] == {"type": "string", "description": "At least 2 characters; must match /^a/"}
    assert p["f"]["description"] == "An object mapping keys to integer values"
    assert p["g"] == {"oneOf": [{"type": "integer"}, {"type": "string"}]}
    assert p["h"]["properties"] == {"z": {"type": "string"}} and p["h"]["description"] == "inner thing"


class Node(pydantic.BaseModel):
    value: int
    children: list[Node] = []


def test_recursive_model_becomes_object():
    @tool
    def walk(tree: Node) -> int:
        """Walk a tree."""

    children = walk.parameters["properties"]["tree"]["properties"]["children"]
    assert children["items"]["type"] == "object"


def test_names_become_identifiers_and_are_mapped_back():
    @tool(name="Web Search")
    def web(q: str) -> str:
        """Search."""
        return q

    assert web.name == "Web_Search" and web.display_name == "Web Search"
    registry = ToolRegistry([web])
    found, call = registry.resolve("functions.Web_Search", '{"q": "x"}', "commentary")
    assert found is web and call.name == "Web_Search"


def test_validation_uses_the_original_schema():
    @tool
    def ratio(x: float = pydantic.Field(ge=0, le=1)) -> float:
        """A ratio."""
        return x

    with pytest.raises(ToolRetry, match="x: Input should be less than or equal to 1"):
        ratio.validate('{"x": 2}')
    assert ratio.validate('{"x": 0.5}') == {"x": 0.5}


def test_pydantic_model_arguments_arrive_as_models():
    @tool
    def save(person: Person) -> str:
        """Save."""
        return person.address.city

    kwargs = save.validate('{"person": {"name": "A", "address": {"street": "s", "city": "Oslo"}}}')
    assert isinstance(kwargs["person"], Person) and save(**kwargs) == "Oslo"


def test_decorated_function_still_calls():
    @tool
    def double(x: int) -> int:
        """Double."""
        return 2 * x

    assert double(4) == 8


def test_var_args_are_refused():
    with pytest.raises(ConfigurationError, match="\\*args and \\*\\*kwargs"):
        tool(lambda *a: None)


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ({"a": 1}, '{"a": 1}'),
        ([1, "b"], '[1, "b"]'),
        (Point(1, 2), '{"x": 1, "y": 2}'),
        (Address(street="s", city="c"), '{"street":"s","city":"c"}'),
        (3.5, "3.5"),
        (None, "null"),
        (Color.RED, "Color.RED"),
    ],
)
def test_output_formatting(value, text):
    assert format_output(value) == text


def test_output_that_is_not_json_falls_back_to_str():
    value = {"handle": Point}
    assert format_output(value) == str(value)


def test_registry_refuses_duplicates_and_unknown_builtins():
    @tool
    def a() -> str:
        """A."""

    with pytest.raises(ConfigurationError, match="two tools are named 'a'"):
        ToolRegistry([a, a])
    with pytest.raises(ConfigurationError, match="unknown built-in tool 'shell'"):
        ToolRegistry(["shell"])
