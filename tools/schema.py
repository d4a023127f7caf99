"""JSON schemas cleaned so that Harmony renders every field as a real type.

openai-harmony turns a tool's JSON schema into a TypeScript-like signature, and
anything it does not understand (`$ref`, `anyOf`, `allOf`, `const`, untyped
enums, ...) renders as `any`. `clean_schema` rewrites a pydantic schema into the
subset that renders faithfully and moves constraints the renderer drops into
descriptions. Arguments are still validated against the original schema.
"""

from __future__ import annotations

import copy
from typing import Any

_CONSTRAINTS = {
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minimum": "minimum {}",
    "maximum": "maximum {}",
    "exclusiveMinimum": "greater than {}",
    "exclusiveMaximum": "less than {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
    "pattern": "must match /{}/",
    "format": "format: {}",
    "multipleOf": "a multiple of {}",
}
_DROP = ("title", "$defs", "definitions", "$schema", "discriminator")


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `schema` that Harmony renders without `any`."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _clean(copy.deepcopy(schema), defs, ())


def _describe(node: dict[str, Any], extra: str) -> None:
    if extra:
        desc = node.get("description", "")
        node["description"] = f"{desc} ({extra})" if desc else extra[0].upper() + extra[1:]


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null"


def _clean(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            merged = {"type": "object", "description": node.get("description") or f"a {name} object"}
            return merged
        target = copy.deepcopy(defs[name])
        target.update({k: v for k, v in node.items() if k in ("description", "default")})
        return _clean(target, defs, seen + (name,))

    for key in _DROP:
        node.pop(key, None)

    # Unions: drop the null branch, merge what is left.
    for key in ("anyOf", "oneOf"):
        if key in node:
            branches = [b for b in node.pop(key) if not _is_null(b)]
            branches = [_clean(b, defs, seen) for b in branches]
            if len(branches) == 1:
                inner = branches[0]
                for k, v in node.items():
                    inner.setdefault(k, v)
                node = inner
            elif branches:
                node["oneOf"] = branches
    if "allOf" in node:
        parts = [_clean(p, defs, seen) for p in node.pop("allOf")]
        for part in parts:
            for k, v in part.items():
                node.setdefault(k, v)

    # Nullable type lists: keep the real type.
    if isinstance(node.get("type"), list):
        types = [t for t in node["type"] if t != "null"]
        node["type"] = types[0] if len(types) == 1 else types
    if "const" in node:
        value = node.pop("const")
        node["enum"] = [value]
    if "enum" in node:
        values = [v for v in node["enum"] if v is not None]
        node["enum"] = values
        if all(isinstance(v, str) for v in values):
            node["type"] = "string"
        else:
            node.pop("enum")
            node.setdefault("type", "number" if all(isinstance(v, (int, float)) for v in values) else "string")
            _describe(node, "one of " + ", ".join(str(v) for v in values))

    extras = []
    for key, template in _CONSTRAINTS.items():
        if key in node:
            extras.append(template.format(node.pop(key)))
    _describe(node, "; ".join(extras))

    if "properties" in node:
        node["properties"] = {k: _clean(v, defs, seen) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
    if isinstance(node.get("additionalProperties"), dict):
        value = _clean(node.pop("additionalProperties"), defs, seen)
        if "properties" not in node:
            node["type"] = "object"
            _describe(node, f"an object mapping keys to {_short_type(value)} values")
    elif node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if "items" in node:
        items = _clean(node["items"], defs, seen)
        if isinstance(items, dict) and "enum" in items:
            _describe(node, "each one of " + ", ".join(repr(v) for v in items.pop("enum")))
        node["items"] = items
    if "prefixItems" in node:
        node.pop("prefixItems")
        node["type"] = "array"
    return node


def _short_type(node: dict[str, Any]) -> str:
    kind = node.get("type", "any")
    return "/".join(kind) if isinstance(kind, list) else str(kind)
