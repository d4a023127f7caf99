"""What the model reads for an MCP tool result.

Text blocks as they are; structured content as compact JSON when there is no
text; images, audio and resources as a one-line description the model can act
on (it cannot see pixels), with the text of text resources.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def format_result(result: Any) -> str:
    """The text of a `CallToolResult`: its content blocks, one after another."""
    parts = [_block(block) for block in result.content or ()]
    parts = [p for p in parts if p]
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
    return "\n".join(parts)


def _block(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {_size(_decoded_length(block.data))}; not shown to you]"
    if kind == "resource":
        return _resource(block.resource)
    if kind == "resource_link":
        about = f" ({block.mime_type})" if block.mime_type else ""
        description = f": {block.description}" if block.description else ""
        return f"[resource link {block.name} <{block.uri}>{about}{description}]"
    return f"[{kind or 'unknown'} content; not shown to you]"


def _resource(resource: Any) -> str:
    mime = f", {resource.mime_type}" if resource.mime_type else ""
    text = getattr(resource, "text", None)
    if text is not None:
        return f"[resource <{resource.uri}>{mime}]\n{text}"
    size = _size(_decoded_length(getattr(resource, "blob", "") or ""))
    return f"[resource <{resource.uri}>{mime}, {size} of binary data; not shown to you]"


def _decoded_length(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data)


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB"
