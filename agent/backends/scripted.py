"""`ScriptedBackend`: a model that replays a script, for testing agents without a GPU.

Each script item is one sampling pass (what the model writes after
`<|start|>assistant`), given as raw Harmony text, as token ids, or as Harmony `Message`s:

    from agent.backends import ScriptedBackend, call, final

    backend = ScriptedBackend([
        call("functions.get_weather", {"city": "Paris"}, reasoning="Need the weather."),
        final("It is sunny in Paris.", reasoning="Tool said sunny."),
        "<|channel|>final<|message|>Raw Harmony text works too.<|return|>",
    ])

The script is turned into token ids and streamed through exactly the same
path as a real backend's output; like a sampler, a pass stops at its first
stop token (`<|call|>`, `<|return|>`; `honour_stops=False` plays a server
that ignores them) and reports `finish_reason="length"` when the completion
budget cuts it. Every prompt is recorded (`prompts`,
`prompt_texts`); `assert_complete()` fails if items were left unused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

from openai_harmony import Author, Message, Role

from agent.backends.base import CompletionRequest, Usage, shared_prefix
from agent.errors import BackendError
from agent.harmony.encoding import get_encoding, special_ids

ScriptItem: TypeAlias = str | Message | Sequence[Message] | Sequence[int]


def final(text: str, *, reasoning: str | None = None) -> list[Message]:
    """An assistant turn that answers `text`, optionally after some reasoning."""
    turn = _reasoning(reasoning)
    turn.append(Message.from_role_and_content(Role.ASSISTANT, text).with_channel("final"))
    return turn


def preamble(text: str) -> Message:
    """A commentary message to the user with no recipient (put it before a call)."""
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel("commentary")


def call(
    recipient: str,
    arguments: dict[str, Any] | str,
    *,
    reasoning: str | None = None,
    channel: str | None = None,
) -> list[Message]:
    """An assistant turn that calls a tool: `functions.NAME`, `browser.search`, `python`, ...

    Function calls go on `commentary` with a JSON payload, built-ins on
    `analysis` with `code`, as gpt-oss was trained.
    """
    is_function = recipient.startswith("functions.")
    payload = arguments if isinstance(arguments, str) else json.dumps(arguments)
    message = (
        Message.from_role_and_content(Role.ASSISTANT, payload)
        .with_channel(channel or ("commentary" if is_function else "analysis"))
        .with_recipient(recipient)
        .with_content_type("<|constrain|>json" if is_function else "code")
    )
    return _reasoning(reasoning) + [message]


def _reasoning(text: str | None) -> list[Message]:
    if not text:
        return []
    return [Message.from_role_and_content(Role.ASSISTANT, text).with_channel("analysis")]


def completion_tokens(item: ScriptItem) -> list[int]:
    """The token ids a model would sample for one script item."""
    enc, ids = get_encoding(), special_ids()
    if isinstance(item, str):
        return enc.encode(item, allowed_special="all")
    if isinstance(item, Sequence) and item and all(isinstance(t, int) for t in item):
        return [int(t) for t in item]  # token ids, as a model sampled them
    messages = [item] if isinstance(item, Message) else list(item)
    tokens: list[int] = []
    for message in messages:
        if message.author != Author(role=Role.ASSISTANT):
            raise ValueError("a script turn holds assistant messages only")
        if message.recipient:
            tokens += list(ids.assistant_header) + _sampled_call(message)
        else:
            tokens += enc.render(message)
    header = list(ids.assistant_header)
    if tokens[: len(header)] == header:
        tokens = tokens[len(header) :]
    if messages and not messages[-1].recipient and tokens and tokens[-1] == ids.end:
        tokens[-1] = ids.return_  # a final answer ends in <|return|> when sampled
    return tokens


def _sampled_call(message: Message) -> list[int]:
    # gpt-oss samples `<|channel|>X to=R <|constrain|>json`; openai-harmony renders `to=R<|channel|>X ...`.
    # Replay what the model writes, so prompts carry the sampled header exactly as a real backend would.
    ctype = f" {message.content_type}" if message.content_type else ""
    text = "".join(getattr(c, "text", "") for c in message.content)
    header = f"<|channel|>{message.channel} to={message.recipient}{ctype}<|message|>"
    return get_encoding().encode(header, allowed_special="all") + get_encoding().encode(text) + [special_ids().call]


class ScriptedBackend:
    """A backend that plays back scripted completions, chunk by chunk."""

    def __init__(
        self,
        script: Sequence[ScriptItem] = (),
        *,
        chunk_size: int = 1,
        context_window: int = 131_072,
        max_completion_tokens: int = 4_096,
        honour_stops: bool = True,
    ) -> None:
        self._script = [completion_tokens(item) for item in script]
        self.honour_stops = honour_stops  # False: like a server that ignores the stop set and sends everything
        self._next = 0
        self.chunk_size = chunk_size
        self._context_window = context_window
        self._max_completion_tokens = max_completion_tokens
        self.prompts: list[list[int]] = []
        self.requests: list[CompletionRequest] = []

    @property
    def context_window(self) -> int:
        return self._context_window

    @property
    def max_completion_tokens(self) -> int:
        return self._max_completion_tokens

    def add(self, item: ScriptItem) -> None:
        """Append one more completion to the script."""
        self._script.append(completion_tokens(item))

    @property
    def remaining(self) -> int:
        return len(self._script) - self._next

    @property
    def prompt_texts(self) -> list[str]:
        return [get_encoding().decode(p) for p in self.prompts]

    def assert_complete(self) -> None:
        """Fail if the agent did not consume the whole script."""
        if self.remaining:
            raise AssertionError(f"{self.remaining} scripted completion(s) were never requested")

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        if self._next >= len(self._script):
            raise BackendError(f"the script ran out after {len(self._script)} completion(s)")
        previous = self.prompts[-1] if self.prompts else []
        self.prompts.append(list(request.prompt))
        self.requests.append(request)
        tokens = self._script[self._next]
        self._next += 1
        stop = next((i for i, t in enumerate(tokens) if t in request.stop), None)
        if stop is not None and self.honour_stops:  # a sampler stops at the first stop token
            tokens = tokens[: stop + 1]
        cut = len(tokens) > request.max_tokens
        tokens = tokens[: request.max_tokens]
        for start in range(0, len(tokens), self.chunk_size):
            yield tokens[start : start + self.chunk_size]
        yield Usage(
            prompt_tokens=len(request.prompt),
            cached_prompt_tokens=shared_prefix(previous, request.prompt),
            completion_tokens=len(tokens),
            finish_reason="length" if cut else "stop",
        )

    async def aclose(self) -> None:
        return None
