"""`@tool`: turn a plain (sync or async) Python function into a tool the model can call."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, get_type_hints, overload

import pydantic
from openai_harmony import ToolDescription
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError

from tools.base import DEFAULT_TOOL_TIMEOUT, Tool, ToolCall, ToolExit
from tools.docstrings import parse_docstring
from tools.errors import ConfigurationError, ToolRetry
from tools.schema import clean_schema


class FunctionTool(Tool):
    """A user function exposed to the model as `functions.NAME`.

    The JSON schema comes from the type hints (via pydantic), descriptions from
    the docstring. Arguments are validated before the call; validation errors
    go back to the model as the tool's result.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = DEFAULT_TOOL_TIMEOUT,
        retries: int = 3,
        requires_approval: bool = False,
        max_output_chars: int = 20_000,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"@tool needs a function, got {fn!r}")
        self.fn = fn
        self.display_name = name or fn.__name__
        self.name = to_identifier(self.display_name)
        doc = parse_docstring(fn.__doc__)
        self.description = description if description is not None else doc.summary
        self.timeout = timeout
        self.retries = retries
        self.requires_approval = requires_approval
        self.max_output_chars = max_output_chars
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments_model = _arguments_model(fn, self.name, doc.params)
        self.json_schema = self.arguments_model.model_json_schema()
        self.parameters = clean_schema(self.json_schema)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"

    def tool_description(self) -> ToolDescription:
        params = self.parameters if self.parameters.get("properties") else None
        return ToolDescription.new(self.name, self.description, params)

    def validate(self, arguments: str) -> dict[str, Any]:
        """Parse and validate the model's JSON arguments; `ToolRetry` says what is wrong."""
        data = parse_json_arguments(arguments)
        try:
            model = self.arguments_model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ToolRetry(
                f"invalid arguments for {self.name}: {_explain(exc)}; call it again with corrected arguments"
            ) from None
        return {field: getattr(model, field) for field in type(model).model_fields}

    async def invoke(self, call: ToolCall) -> str:
        kwargs = self.validate(call.arguments)
        if self.is_async:
            value = await self.fn(**kwargs)
        else:
            value = await asyncio.to_thread(_in_thread, self.fn, kwargs)
        return format_output(value)


def _in_thread(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    # Nothing raised in a worker thread is the user's Ctrl-C: a tool's `sys.exit()` or
    # `raise KeyboardInterrupt` becomes an ordinary error the model is told about.
    try:
        return fn(**kwargs)
    except Exception:
        raise
    except BaseException as exc:
        raise ToolExit.of(exc) from None


@overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TOOL_TIMEOUT,
    retries: int = 3,
    requires_approval: bool = False,
    max_output_chars: int = 20_000,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a tool: `@tool` or `@tool(name=..., timeout=..., retries=..., requires_approval=...)`.

    The decorated object still calls like the original function.
    """
    if fn is not None:
        return FunctionTool(fn, **options)
    return lambda f: FunctionTool(f, **options)


def to_identifier(name: str) -> str:
    """Harmony needs identifier names: `Web Search` would break the call header."""
    ident = re.sub(r"\W", "_", name.strip(), flags=re.ASCII).strip("_") or "tool"
    return f"_{ident}" if ident[0].isdigit() else ident


def repair_json_arguments(text: str) -> str:
    """The arguments with the slips peers repair undone; anything else unchanged.

    - a JSON string that holds JSON (`"{\\"city\\": \\"Oslo\\"}"`) is that JSON (vLLM, llama.cpp);
    - quotes escaped outside any string (`{"query": \\"foo\\"}`) are plain quotes, when that parses;
    - an object in a code fence or with words around it is that object (llama.cpp, Ollama).
    """
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return _unescaped(stripped) or _enclosed(stripped) or text
    if isinstance(value, str) and value.strip().startswith(("{", "[")):
        try:
            inner = json.loads(value)
        except json.JSONDecodeError:
            return text
        if isinstance(inner, (dict, list)):
            return value
    return text


def _unescaped(text: str) -> str | None:
    if '\\"' not in text:
        return None
    unescaped = text.replace('\\"', '"')
    try:
        json.loads(unescaped)
    except json.JSONDecodeError:
        return None
    return unescaped


def _enclosed(text: str) -> str | None:
    """The one JSON object inside `text` (a ```json fence, a sentence before it), if it is whole."""
    first, last = text.find("{"), text.rfind("}")
    if not 0 <= first < last:
        return None
    inner = text[first : last + 1]
    try:
        return inner if isinstance(json.loads(inner), dict) else None
    except json.JSONDecodeError:
        return None


def parse_json_arguments(text: str) -> Any:
    """Read the model's JSON payload, tolerating code fences and text around the object."""
    text = repair_json_arguments(text).strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolRetry(
            f"invalid JSON arguments: {exc.msg} at position {exc.pos}; call the tool again with valid JSON"
        ) from None


def format_output(value: Any) -> str:
    """Strings as they are; models, dataclasses, dicts and lists as JSON; the rest via `str()`."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, (dict, list, tuple, int, float, bool)) or value is None:
        try:
            return json.dumps(pydantic.TypeAdapter(Any).dump_python(value, mode="json"), ensure_ascii=False)
        except (TypeError, ValueError, PydanticSerializationError):
            pass
    return str(value)


def _arguments_model(fn: Callable[..., Any], name: str, docs: dict[str, str]) -> type[pydantic.BaseModel]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(f"tool {name}: cannot resolve type hints ({exc})") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigurationError(f"tool {name}: *args and **kwargs cannot be described to the model")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        if isinstance(default, FieldInfo):  # `x: float = Field(ge=0)` keeps its constraints
            info = FieldInfo.merge_field_infos(default, description=default.description or docs.get(param.name))
        else:
            info = pydantic.Field(default, description=docs.get(param.name) or None)
        fields[param.name] = (annotation, info)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{name}_arguments", __config__=config, **fields)


def _explain(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
