"""Events as JSON objects, one per line, for `oss-agent run --json`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def event_to_dict(event: Any) -> dict[str, Any]:
    """A plain-JSON dict of an event; `type` first, Harmony messages as their dicts."""
    data = {"type": event.type}
    for f in dataclasses.fields(event):
        if f.name != "type":
            data[f.name] = _plain(getattr(event, f.name))
    return data


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    return {"type": "error", "error": type(exc).__name__, "message": one_line(str(exc))}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def one_line(text: str) -> str:
    return " ".join(text.split())


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict") and hasattr(value, "author"):  # an openai_harmony Message
        return _plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):  # enums
        return value.value
    return value
