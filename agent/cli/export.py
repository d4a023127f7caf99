"""`oss-agent sessions export ID --format markdown|json`: a saved conversation as a document or as data."""

from __future__ import annotations

import datetime
import json
from typing import Any


def export_session(saved: Any, fmt: str) -> str:
    """The session as Markdown (user, tool calls and results, answers) or JSON (every message)."""
    return _json(saved) if fmt == "json" else _markdown(saved)


def _messages(saved: Any) -> list[dict[str, Any]]:
    from agent.harmony.parse import message_text

    rows = []
    for message in saved.messages:
        rows.append(
            {
                "role": str(getattr(message.author.role, "value", message.author.role)),
                "name": message.author.name,
                "channel": message.channel,
                "recipient": message.recipient,
                "text": message_text(message),
            }
        )
    return rows


def _json(saved: Any) -> str:
    info = saved.info
    data = {
        "id": info.id,
        "title": info.title,
        "created_at": _iso(info.created_at),
        "updated_at": _iso(info.updated_at),
        "settings": saved.settings,
        "messages": _messages(saved),
    }
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def _markdown(saved: Any) -> str:
    info, settings = saved.info, saved.settings
    lines = [
        f"# {info.title}",
        "",
        f"`{info.id}` · {_iso(info.created_at)} · {settings.get('model', '?')} · "
        f"effort {settings.get('reasoning_effort', '?')}",
        "",
    ]
    for row in _messages(saved):
        text = row["text"].strip()
        if row["role"] == "user":
            lines += ["## User", "", text, ""]
        elif row["role"] == "tool":
            lines += [f"**{row['name']}** returned:", "", _fence(text), ""]
        elif row["recipient"]:
            lines += [f"**{row['recipient']}** called with:", "", _fence(text), ""]
        elif row["channel"] == "analysis":
            lines += ["<details><summary>Reasoning</summary>", "", text, "", "</details>", ""]
        elif row["channel"] == "final":
            lines += ["## Assistant", "", text, ""]
        elif text:
            lines += [f"*{text}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc).isoformat(timespec="seconds")
