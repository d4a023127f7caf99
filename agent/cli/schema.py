"""`oss-agent run --schema`: an output type from llm's concise syntax or from a JSON schema file.

Concise syntax: fields separated by commas or newlines, each `name [type][: description]`,
the type one of str, int, float, bool (str when left out): `'name str, age int: in years'`.
A file holds a JSON Schema, enforced whole (`agent.output.JsonSchema`): every keyword its draft
defines, nested objects and arrays included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def output_type(spec: str) -> Any:
    """The output type for `--schema SPEC`: a JSON Schema file, or a pydantic model from concise syntax."""
    path = Path(spec).expanduser()
    if spec.endswith(".json") or (path.is_file() and not any(c in spec for c in ",\n")):
        return _from_file(path)
    return _model(_concise(spec), f"--schema {spec!r}")


def _concise(spec: str) -> dict[str, tuple[type, str | None]]:
    fields: dict[str, tuple[type, str | None]] = {}
    for part in filter(None, (p.strip() for p in spec.replace("\n", ",").split(","))):
        head, _, description = part.partition(":")
        words = head.split()
        if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1] not in _TYPES):
            raise ConfigurationError(
                f"--schema: cannot read {part!r}; write fields as 'name type: description' with type "
                f"one of {', '.join(_TYPES)}, e.g. 'name str, age int'"
            )
        fields[words[0]] = (_TYPES[words[1]] if len(words) == 2 else str, description.strip() or None)
    if not fields:
        raise ConfigurationError("--schema is empty; e.g. --schema 'name str, age int'")
    return fields


def _from_file(path: Path) -> Any:
    from agent.output import JsonSchema

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--schema {path}: cannot read it as JSON ({exc})") from None
    try:
        return JsonSchema(schema, name=str(schema.get("title") or path.stem) if isinstance(schema, dict) else None)
    except ConfigurationError as exc:
        raise ConfigurationError(f"--schema {path}: {exc}") from None


def _model(fields: dict[str, tuple[type, str | None]], where: str, title: str | None = None) -> Any:
    import pydantic

    try:
        return pydantic.create_model(  # type: ignore[call-overload]
            title or "Answer",
            **{name: (kind, pydantic.Field(description=description)) for name, (kind, description) in fields.items()},
        )
    except (TypeError, ValueError, NameError) as exc:
        raise ConfigurationError(f"--schema {where}: {exc}") from None
