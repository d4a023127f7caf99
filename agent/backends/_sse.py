"""Server-sent events, read the way the SSE spec says: lines end at CR, LF or CRLF only.

`httpx.Response.aiter_lines()` splits like `str.splitlines`, which also cuts at
U+2028, U+2029, U+0085 and other separators that JSON strings carry unescaped,
so a model quoting web text would break the stream in two.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import httpx

_LINE_END = re.compile(r"\r\n|\r|\n")


async def aiter_lines(chunks: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """Lines of a text stream split at CR, LF and CRLF, a CRLF split across chunks included."""
    pending = ""
    async for chunk in chunks:
        pending += chunk
        held = pending.endswith("\r")  # maybe the first half of a CRLF: wait for the next chunk
        *lines, rest = _LINE_END.split(pending[:-1] if held else pending)
        pending = rest + ("\r" if held else "")
        for line in lines:
            yield line
    if pending:
        yield pending.removesuffix("\r")


async def aiter_data(response: httpx.Response) -> AsyncGenerator[str, None]:
    """The `data` of each event of an SSE response (multi-line data joined with LF)."""
    data: list[str] = []
    text = cast("AsyncGenerator[str, None]", response.aiter_text())  # an async generator: close it, too
    async with contextlib.aclosing(text), contextlib.aclosing(aiter_lines(text)) as lines:
        async for line in lines:
            if line == "":
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            if line.startswith(":"):
                continue  # comment
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)
