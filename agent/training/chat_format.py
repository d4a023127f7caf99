"""Training examples as chat messages, the shape Hugging Face's gpt-oss template and TRL read.

`to_chat` writes a turn as `messages` (`role`, `content`, `thinking`,
`tool_calls` with `function.name`/`arguments`, `tool` results), `tools` (JSON
schemas of the functions) and `chat_template_kwargs` (`reasoning_effort`,
`builtin_tools`). A few keys the template ignores keep the conversion lossless:
`channel` on a message that is not what its shape implies (a preamble, an
analysis with nothing after it, a call on the analysis channel), `recipient`
on a call to a built-in tool, `content_type` on a call or a structured
answer, and the top-level
`conversation_start_date`, `builtin_namespaces` and `response_format`.
`from_chat` reads them back into Harmony messages, which render to the same
token ids as the example.

The stock template is lossy for training: it drops the chain's reasoning when a
final answer follows, quotes tool results as JSON strings and writes its own
date; train on `input_ids`/`labels` to keep what the model actually saw.
"""

from __future__ import annotations

import json
from typing import Any

from openai_harmony import Author, Message, Role, ToolDescription, ToolNamespaceConfig

from agent.harmony.parse import message_text
from agent.harmony.render import PromptSettings
from agent.training.examples import TurnExample

FUNCTIONS = "functions."


def to_chat(example: TurnExample) -> dict[str, Any]:
    """The turn's conversation (prompt view, then the turn) in the chat-messages form."""
    settings = example.settings
    messages: list[dict[str, Any]] = []
    if settings.instructions:
        messages.append({"role": "developer", "content": settings.instructions})
    thinking: str | None = None
    for message in example.history + example.target:
        role, text = message.author.role, message_text(message)
        if role == Role.ASSISTANT and message.channel == "analysis" and not message.recipient:
            if thinking is not None:
                messages.append({"role": "assistant", "channel": "analysis", "content": thinking})
            thinking = text
            continue
        takes_thinking = role == Role.ASSISTANT and (message.recipient or message.channel == "final")
        if thinking is not None and not takes_thinking:
            messages.append({"role": "assistant", "channel": "analysis", "content": thinking})
            thinking = None
        row = _row(message, text)
        if thinking is not None:
            row["thinking"], thinking = thinking, None
        messages.append(row)
    if thinking is not None:
        messages.append({"role": "assistant", "channel": "analysis", "content": thinking})
    return {
        "messages": messages,
        "tools": [_function_schema(f) for f in settings.functions],
        "chat_template_kwargs": {
            "reasoning_effort": settings.reasoning_effort,
            "builtin_tools": [b.name for b in settings.builtins],
        },
        "conversation_start_date": settings.date,
        "builtin_namespaces": [b.model_dump(mode="json") for b in settings.builtins],
        "response_format": settings.response_format,
    }


def from_chat(record: dict[str, Any]) -> tuple[PromptSettings, list[Message], list[Message]]:
    """Prompt settings, prompt history and target of a chat-form record (the turn follows the last user message)."""
    rows = list(record.get("messages") or [])
    instructions = None
    if rows and rows[0].get("role") in ("developer", "system"):
        instructions = rows.pop(0).get("content") or None
    kwargs = record.get("chat_template_kwargs") or {}
    namespaces = record.get("builtin_namespaces")
    if namespaces is None:  # written by hand or by another tool: the stock built-ins by name
        stock = {"browser": ToolNamespaceConfig.browser, "python": ToolNamespaceConfig.python}
        builtins = [stock[name]() for name in kwargs.get("builtin_tools") or [] if name in stock]
    else:
        builtins = [ToolNamespaceConfig.model_validate(b) for b in namespaces]
    settings = PromptSettings(
        reasoning_effort=kwargs.get("reasoning_effort") or "medium",
        date=record.get("conversation_start_date"),
        instructions=instructions,
        builtins=builtins,
        functions=[_description(t) for t in record.get("tools") or []],
        response_format=record.get("response_format"),
    )
    messages: list[Message] = []
    last_call: str | None = None
    for row in rows:
        converted, last_call = _messages(row, last_call)
        messages += converted
    users = [i for i, m in enumerate(messages) if m.author.role == Role.USER]
    split = users[-1] + 1 if users else 0
    return settings, messages[:split], messages[split:]


# -- one message each way -------------------------------------------------------


def _row(message: Message, text: str) -> dict[str, Any]:
    role = message.author.role
    if role == Role.USER:
        return {"role": "user", "content": text}
    if role == Role.TOOL:
        row: dict[str, Any] = {"role": "tool", "name": message.author.name, "content": text}
        if message.channel not in (None, "commentary"):
            row["channel"] = message.channel
        return row
    if message.recipient:
        recipient = message.recipient
        function: dict[str, Any] = {
            "name": recipient.removeprefix(FUNCTIONS),
            "arguments": _arguments(text),
        }
        if message.content_type:
            function["content_type"] = message.content_type
        call: dict[str, Any] = {"type": "function", "function": function}
        if not recipient.startswith(FUNCTIONS):
            call["recipient"] = recipient
        row = {"role": "assistant", "content": "", "tool_calls": [call]}
        if message.channel != "commentary":
            row["channel"] = message.channel
        return row
    row = {"role": "assistant", "content": text}
    if message.channel != "final":
        row["channel"] = message.channel
    if message.content_type:  # a structured answer's `<|constrain|>json`
        row["content_type"] = message.content_type
    return row


def _messages(row: dict[str, Any], last_call: str | None) -> tuple[list[Message], str | None]:
    """Harmony messages of one chat row, and the recipient tool results now answer."""
    role, content = row.get("role"), row.get("content") or ""
    if role == "user":
        return [Message.from_role_and_content(Role.USER, content)], last_call
    if role == "tool":
        name = row.get("name") or last_call or "functions.unknown"
        reply = Message.from_author_and_content(Author.new(Role.TOOL, name), content).with_recipient("assistant")
        return [reply.with_channel(row.get("channel") or "commentary")], last_call
    if role != "assistant":
        raise ValueError(f"unexpected role {role!r} in a training record")
    out: list[Message] = []
    thinking = row.get("thinking") or (content if row.get("tool_calls") else None)  # the template's two spellings
    if thinking:
        out.append(_assistant(thinking, "analysis"))
    for call in row.get("tool_calls") or []:
        function = call.get("function") or call
        recipient = call.get("recipient") or FUNCTIONS + function["name"]
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else _compact(arguments)
        message = _assistant(text, row.get("channel") or "commentary").with_recipient(recipient)
        if function.get("content_type"):
            message = message.with_content_type(function["content_type"])
        out.append(message)
        last_call = recipient
    if not row.get("tool_calls"):
        message = _assistant(content, row.get("channel") or "final")
        out.append(message.with_content_type(row["content_type"]) if row.get("content_type") else message)
    return out, last_call


def _assistant(text: str, channel: str) -> Message:
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)


def _arguments(text: str) -> Any:
    """A call's arguments as an object when that loses nothing (gpt-oss writes compact JSON), else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) and _compact(value) == text else text


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _function_schema(tool: ToolDescription) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "description": tool.description}
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def _description(schema: dict[str, Any]) -> ToolDescription:
    function = schema.get("function") or schema
    return ToolDescription.new(function["name"], function.get("description") or "", function.get("parameters"))
