"""Spotting the start of a final answer in sampled ids, for backends that constrain its body.

A backend that constrains a structured answer lets the model reason and call
tools freely and switches to the schema only once the model opened the final
channel. `FinalWatch` holds back each message header until its `<|message|>`;
a final answer's header comes out as the canonical
`<|channel|>final <|constrain|>json<|message|>` (the shape the constrained
continuation starts from), every other header as it was sampled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from agent.backends.base import CompletionRequest, Usage
from agent.harmony.encoding import get_encoding, special_ids
from agent.harmony.header import HeaderError, read_header

FINAL_HEADER = "<|channel|>final <|constrain|>json<|message|>"


def final_header_ids() -> list[int]:
    return get_encoding().encode(FINAL_HEADER, allowed_special="all")


def other_ends() -> list[int]:
    """Ids that could end a constrained body other than `<|return|>`: banned there (a final cannot be a call)."""
    enc = get_encoding()
    return [enc.encode(t, allowed_special="all")[0] for t in ("<|call|>", "<|end|>", "<|endoftext|>")]


class FinalWatch:
    """Feed it sampled ids; it returns the ids to pass on, and says when a final answer's body begins."""

    def __init__(self, prompt: list[int] | None = None) -> None:
        self._ids = special_ids()
        self._header: list[int] = []
        self._in_header = True  # a completion starts in the first message's header
        header = final_header_ids()
        self.opened = prompt is not None and prompt[-len(header) :] == header  # a continuation of a final's body
        self.replaced = 0  # once opened: the sampled ids (`<|channel|>` … `<|message|>`) the canonical header replaced

    def feed(self, ids: list[int]) -> list[int]:
        """The ids to pass on now; once `opened`, the rest of `ids` is dropped (the continuation resamples it)."""
        out: list[int] = []
        for token in ids:
            if self.opened:
                break
            if not self._in_header:
                out.append(token)
                self._in_header = token == self._ids.end
                continue
            self._header.append(token)
            if token != self._ids.message:
                continue
            header, self._header, self._in_header = self._header, [], False
            if _is_final(header):
                self.opened = True
                head = header[: header.index(self._ids.channel)] if self._ids.channel in header else []
                self.replaced = len(header) - len(head)
                out += head + final_header_ids()
            else:
                out += header
        return out

    def held(self) -> list[int]:
        """Header ids still held back (the completion ended inside a header)."""
        return list(self._header)


def _is_final(header: list[int]) -> bool:
    text = get_encoding().decode(header[:-1])
    while text.startswith("<|start|>"):
        text = text.removeprefix("<|start|>").removeprefix("assistant")
    try:
        read = read_header(text, lambda recipient: recipient)
    except HeaderError:
        return False
    return read.channel == "final" and not read.recipient


Sampler = Callable[[CompletionRequest, "FinalWatch | None", "dict[str, Any] | None"], AsyncGenerator[Any, None]]


async def sampled(
    request: CompletionRequest, sample: Sampler, fields: Callable[[dict[str, Any]], dict[str, Any]]
) -> AsyncIterator[list[int] | Usage]:
    """One plain request, or with `request.final_schema` the two of `constrained`."""
    if request.final_schema is not None:
        async for item in constrained(request, sample, fields):
            yield item
        return
    async with contextlib.aclosing(sample(request, None, None)) as items:
        async for item in items:
            yield item


async def constrained(
    request: CompletionRequest, sample: Sampler, fields: Callable[[dict[str, Any]], dict[str, Any]]
) -> AsyncIterator[list[int] | Usage]:
    """Two requests for a structured final: free sampling up to the final's header, then its body.

    `sample(request, watch, extra)` is one server request (ending where `watch` opens);
    `fields(schema)` are the request fields that constrain the body to the schema.
    """
    watch, sampled, usage = FinalWatch(), list[int](), Usage()
    async with contextlib.aclosing(sample(request, watch, None)) as items:
        async for item in items:
            if isinstance(item, Usage):
                usage = item
            else:
                sampled += item
                yield item
    room = request.max_tokens - len(sampled)
    if not watch.opened or room <= 0 or request.final_schema is None:
        yield usage
        return
    body = replace(request, prompt=request.prompt + sampled, max_tokens=room)
    ends, return_ = set(other_ends()), special_ids().return_
    async with contextlib.aclosing(sample(body, None, fields(request.final_schema))) as items:
        async for item in items:
            if isinstance(item, Usage):
                usage = usage + item
                usage.completion_tokens = len(sampled) + item.completion_tokens
            else:  # the grammar allows an end token only after complete JSON: it ends a final answer
                yield [return_ if token in ends else token for token in item]
    yield usage
