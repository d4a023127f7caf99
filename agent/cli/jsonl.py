"""Events as JSON objects, one per line, for `oss-agent run --json`."""

from __future__ import annotations

import json
from typing import Any

from agent.events import event_to_dict

__all__ = ["dumps", "error_to_dict", "event_to_dict", "one_line"]


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    return {"type": "error", "error": type(exc).__name__, "message": one_line(str(exc))}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def one_line(text: str) -> str:
    return " ".join(text.split())
