"""Structured output: an output type becomes a response format, a final answer becomes a validated object.

`OutputSpec.of(output_type)` accepts a pydantic model, a dataclass, a
`TypedDict`, a `list[...]`, a `Literal` or an enum (anything pydantic's
`TypeAdapter` reads), or a `JsonSchema` (a JSON Schema document, enforced
whole by `jsonschema`); `str` means plain text and gives `None`. The spec holds

- `schema`: the full JSON schema, for servers that constrain sampling to it;
- `format_text()`: the `# Response Formats` entry of the developer message,
  with the schema cleaned like tool schemas (constraints moved into
  descriptions, `$ref`s inlined) so that the model reads every field;
- `validate(raw)`: the answer parsed and validated against the real type,
  raising `OutputInvalid` with the errors worded for the model.

Output validators are functions of the validated object that return it (or a
replacement) and raise `ToolRetry`/`OutputRetry` to send feedback to the model.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union, cast, get_origin

from agent.errors import ConfigurationError, ToolRetry

T = TypeVar("T")
OutputValidator = Callable[[Any], Union[Any, Awaitable[Any]]]  # noqa: UP007 (a runtime alias)
_NAME = re.compile(r"[^A-Za-z0-9_]+")
_MAX_ERRORS = 8


class OutputInvalid(Exception):
    """A final answer that did not validate; `feedback` is what the model is told, `errors` the details."""

    def __init__(self, feedback: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(feedback)
        self.feedback = feedback
        self.errors = errors


@dataclass(frozen=True, eq=False)
class JsonSchema:
    """An output type given as a JSON Schema document: the answer is the JSON value, checked against all of it.

    `Agent(output_type=JsonSchema(schema))`, or `oss-agent run --schema file.json`. Every keyword the
    schema's draft defines is enforced (`required`, `minimum`, `enum`, `pattern`, nested objects and arrays,
    `$ref`...); violations go back to the model like any validation error.
    """

    schema: dict[str, Any]
    name: str | None = None

    def __post_init__(self) -> None:
        from jsonschema import SchemaError, validators

        if not isinstance(self.schema, dict):
            raise ConfigurationError("a JSON Schema must be a JSON object")
        try:
            validators.validator_for(self.schema).check_schema(self.schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "the schema"
            raise ConfigurationError(f"not a valid JSON Schema ({where}: {exc.message})") from None

    def violations(self, data: Any) -> list[dict[str, Any]]:
        """Every way `data` breaks the schema, most specific first, as `{type, loc, msg}`."""
        from jsonschema import validators

        validator = validators.validator_for(self.schema)(self.schema)
        errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
        return [{"type": str(e.validator), "loc": list(e.absolute_path), "msg": e.message} for e in errors]


@dataclass(frozen=True)
class OutputSpec(Generic[T]):
    """One output type, ready for the prompt, the sampler and the validator."""

    output_type: Any
    name: str
    description: str | None
    schema: dict[str, Any]

    @staticmethod
    def of(output_type: Any) -> OutputSpec[Any] | None:
        """The spec of `output_type`; None for `str` (and `None`), which keep today's plain-text answers."""
        if output_type is None or output_type is str:
            return None
        if isinstance(output_type, JsonSchema):
            schema = output_type.schema
            name = _NAME.sub("_", output_type.name or str(schema.get("title") or "answer")).strip("_").lower()
            return OutputSpec(output_type, name or "answer", schema.get("description"), schema)
        adapter = _adapter(output_type)
        try:
            schema = adapter.json_schema()
        except Exception as exc:  # pydantic raises several kinds here
            raise ConfigurationError(f"output_type {output_type!r} has no JSON schema: {exc}") from None
        description = schema.get("description") or _docstring(output_type)
        return OutputSpec(output_type, _name(output_type, schema), description, schema)

    def format_text(self) -> str:
        """The entry under `# Response Formats`: `## name`, `// description`, the cleaned schema on one line."""
        from tools.schema import clean_schema

        cleaned = clean_schema(self.schema)
        cleaned.pop("description", None)  # said on the `//` line
        lines = [f"## {self.name}", ""]
        if self.description:
            lines += [f"// {line}".rstrip() for line in self.description.strip().splitlines()]
        lines.append(json.dumps(cleaned, ensure_ascii=False, separators=(",", ":")))
        return "\n".join(lines)

    def validate(self, raw: str) -> T:
        """`raw` parsed as JSON and validated; `OutputInvalid` says what is wrong."""
        from pydantic import ValidationError

        text = raw.strip()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            error = {"type": "json_invalid", "loc": [], "msg": f"not valid JSON: {exc.msg} at character {exc.pos}"}
            raise OutputInvalid(
                f"Your answer is not valid JSON ({exc.msg} at character {exc.pos}). "
                f"Answer again with only a JSON value in the {self.name} response format.",
                [error],
            ) from None
        if isinstance(self.output_type, JsonSchema):
            errors = self.output_type.violations(data)
            if not errors:
                return cast(T, data)
        else:
            try:
                return cast(T, _adapter(self.output_type).validate_python(data))
            except ValidationError as exc:
                errors = [
                    {"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)
                ]
        shown = "\n".join(f"- {_where(e['loc'])}: {e['msg']}" for e in errors[:_MAX_ERRORS])
        more = f"\n- … {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
        raise OutputInvalid(
            f"Your answer does not match the {self.name} response format:\n{shown}{more}\n"
            "Answer again with only the corrected JSON.",
            errors,
        )

    def partial(self, text: str) -> T | None:
        """The answer so far, leniently: unfinished JSON closed, validated as a prefix; None when it does not yet."""
        from pydantic import ValidationError
        from pydantic_core import from_json

        if not text.strip():
            return None
        try:
            data = from_json(text, allow_partial="trailing-strings")
            if isinstance(self.output_type, JsonSchema):
                return cast(T, data)  # a prefix is not checked against the schema: keywords judge whole values
            return cast(T, _adapter(self.output_type).validate_python(data, experimental_allow_partial=True))
        except (ValueError, ValidationError):
            return None


async def apply_validators(value: Any, validators: Sequence[OutputValidator]) -> Any:
    """Run the validators in order, each on the previous one's result; `ToolRetry` becomes `OutputInvalid`."""
    for validator in validators:
        try:
            result = validator(value)
            if inspect.isawaitable(result):
                result = await result
        except ToolRetry as exc:
            raise OutputInvalid(str(exc), [{"type": "validator", "loc": [], "msg": str(exc)}]) from None
        value = value if result is None else result
    return value


def _adapter(output_type: Any) -> Any:
    from pydantic import TypeAdapter

    try:
        return _cached_adapter(output_type, TypeAdapter)
    except Exception as exc:
        raise ConfigurationError(f"output_type {output_type!r} is not a type pydantic can validate: {exc}") from None


_ADAPTERS: dict[Any, Any] = {}


def _cached_adapter(output_type: Any, factory: Any) -> Any:
    try:
        return _ADAPTERS[output_type]
    except TypeError:  # unhashable type expression
        return factory(output_type)
    except KeyError:
        adapter = _ADAPTERS[output_type] = factory(output_type)
        return adapter


def _name(output_type: Any, schema: dict[str, Any]) -> str:
    """snake_case of the type's name (`ShoppingList` → `shopping_list`); generic forms get a plain word."""
    title = schema.get("title") if isinstance(schema.get("title"), str) else None
    raw = getattr(output_type, "__name__", None) if get_origin(output_type) is None else None
    raw = raw or title or ("list" if get_origin(output_type) in (list, tuple, set) else "answer")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw).lower()
    return _NAME.sub("_", snake).strip("_") or "answer"


def _docstring(output_type: Any) -> str | None:
    """The type's own docstring (not one it inherits or a dataclass's generated signature)."""
    own = getattr(output_type, "__dict__", {}).get("__doc__") if isinstance(output_type, type) else None
    if not isinstance(own, str) or own.startswith(f"{output_type.__name__}("):
        return None
    return inspect.cleandoc(own) or None


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "the answer"
