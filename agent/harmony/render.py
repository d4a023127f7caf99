"""Render conversations into prompt token ids, as the Harmony spec says.

Two ways to build the next prompt:

- `render_turn`: the whole conversation, from `Message`s, with earlier turns'
  chain-of-thought dropped (`prompt_view`). Used when a user turn starts.
- `extend_chain`: inside a tool-call chain, the previous prompt + the model's
  own completion tokens verbatim + its stop token + the rendered tool result +
  `<|start|>assistant`. The new prompt extends the old one token for token, so
  a server prefills only the new tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai_harmony import (
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    Role,
    SystemContent,
    ToolDescription,
    ToolNamespaceConfig,
)

from agent.harmony.encoding import get_encoding, special_ids

EFFORTS = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}
_NO_AUTO_DROP = RenderConversationConfig(auto_drop_analysis=False)


@dataclass
class PromptSettings:
    """Everything that goes into the system and developer messages."""

    reasoning_effort: str = "medium"
    date: str | None = None  # fixed per conversation: a changing date invalidates every cached prefix
    instructions: str | None = None
    builtins: list[ToolNamespaceConfig] = field(default_factory=list)
    functions: list[ToolDescription] = field(default_factory=list)
    response_format: str | None = None  # the `# Response Formats` entry (`OutputSpec.format_text()`)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data (what a session stores to render the same prompt again)."""
        return {
            "reasoning_effort": self.reasoning_effort,
            "date": self.date,
            "instructions": self.instructions,
            "builtins": [b.model_dump(mode="json") for b in self.builtins],
            "functions": [f.model_dump(mode="json") for f in self.functions],
            "response_format": self.response_format,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptSettings:
        return cls(
            reasoning_effort=data.get("reasoning_effort") or "medium",
            date=data.get("date"),
            instructions=data.get("instructions"),
            builtins=[ToolNamespaceConfig.model_validate(b) for b in data.get("builtins") or []],
            functions=[ToolDescription.model_validate(f) for f in data.get("functions") or []],
            response_format=data.get("response_format"),
        )

    def header_messages(self) -> list[Message]:
        system = SystemContent.new().with_reasoning_effort(EFFORTS[self.reasoning_effort])
        if self.date:
            system = system.with_conversation_start_date(self.date)
        for namespace in self.builtins:
            system = system.with_tools(namespace)
        messages = [Message.from_role_and_content(Role.SYSTEM, system)]
        if self.instructions or self.functions or self.response_format:  # no empty developer message
            developer = DeveloperContent.new()
            if self.instructions:
                developer = developer.with_instructions(self.instructions)
            if self.functions:
                developer = developer.with_function_tools(self.functions)
            messages.append(Message.from_role_and_content(Role.DEVELOPER, developer))
        return messages


def prompt_view(history: list[Message]) -> list[Message]:
    """Drop `analysis` messages written before the last `final` answer.

    Analysis of the current tool-call chain (after the last final) is kept.
    openai-harmony's own auto-drop cuts at the first final instead, which keeps
    stale reasoning in multi-turn conversations.
    """
    cut = -1
    for i in range(len(history) - 1, -1, -1):
        msg = history[i]
        if msg.author.role == Role.ASSISTANT and msg.channel == "final":
            cut = i
            break
    return [m for i, m in enumerate(history) if i >= cut or m.channel != "analysis"]


def render_turn(settings: PromptSettings, history: list[Message]) -> list[int]:
    """The full prompt for the next assistant message, CoT rule applied.

    Tool calls are rendered in the header order gpt-oss samples them
    (`<|channel|>commentary to=functions.f <|constrain|>json`, as the Harmony
    docs write them), so a new turn's prompt repeats the previous chain's calls
    token for token and the server's cache covers them.
    """
    enc = get_encoding()
    header = enc.render_conversation_for_completion(
        Conversation.from_messages(settings.header_messages()), Role.ASSISTANT, _NO_AUTO_DROP
    )
    tail = list(special_ids().assistant_header)
    ids = header[: len(header) - len(tail)]
    if settings.response_format:
        ids = _with_response_format(ids, settings.response_format)
    for message in prompt_view(history):
        ids += render_message(message)
    return ids + tail


def _with_response_format(header: list[int], entry: str) -> list[int]:
    """The header with `# Response Formats` appended to the developer message (its last message).

    openai-harmony does not render this section, so the developer message's text
    is extended and encoded again as one piece, as a tokenizer would read it.
    """
    enc = get_encoding()
    ids = special_ids()
    start = len(header) - 1 - header[::-1].index(ids.start)  # `<|start|>developer<|message|>…<|end|>`
    body_at = header.index(ids.message, start) + 1
    body = enc.decode(header[body_at:-1])
    text = f"{body}\n\n# Response Formats\n\n{entry}" if body else f"# Response Formats\n\n{entry}"
    return header[:body_at] + enc.encode(text, allowed_special=set()) + header[-1:]


def render_message(message: Message) -> list[int]:
    """One history message as prompt tokens; an assistant call with its header as sampled."""
    enc = get_encoding()
    tokens = enc.render(message)
    if message.author.role != Role.ASSISTANT or not message.recipient:
        return tokens
    from agent.harmony.header import sampled_header  # header imports nothing from here; kept local for clarity

    body = tokens[tokens.index(special_ids().message) :]  # `<|message|>`, the payload, `<|call|>`
    head = enc.encode(sampled_header(message.channel, message.recipient, message.content_type), allowed_special="all")
    return list(special_ids().assistant_header) + head + body


def extend_chain(prompt: list[int], completion: list[int], stop: int, results: list[Message]) -> list[int]:
    """The previous prompt extended by the sampled tokens, their stop token and the tool results."""
    enc = get_encoding()
    ids = prompt + completion
    if not completion or completion[-1] != stop:
        ids.append(stop)
    for message in results:
        ids += enc.render(message)
    ids += special_ids().assistant_header
    return ids


def render_text(ids: list[int]) -> str:
    """Token ids as Harmony text (for `--debug`, `/raw` and tests)."""
    return get_encoding().decode(ids)
