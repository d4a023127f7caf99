"""Read a function's summary and per-parameter descriptions from its docstring.

Understands the three common styles: Google (`Args:`), NumPy (`Parameters`
underlined) and Sphinx (`:param name:`).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_GOOGLE_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:\s*$")
_GOOGLE_OTHER = re.compile(r"^(Returns?|Yields?|Raises|Examples?|Notes?|Attributes|See Also)\s*:\s*$")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_HEADER = re.compile(r"^(\w[\w ]*)\n-{3,}\s*$", re.MULTILINE)
_NUMPY_ITEM = re.compile(r"^(\w+)\s*(:.*)?$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]+\s)?(\w+)\s*:\s*(.*)$")
_SPHINX_ANY = re.compile(r"^:\w+")


@dataclass
class Docstring:
    summary: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> Docstring:
    """Split a docstring into its description and parameter descriptions."""
    if not doc:
        return Docstring()
    text = inspect.cleandoc(doc)
    if re.search(r"^:param\s", text, re.MULTILINE):
        return _parse_sphinx(text)
    if _NUMPY_HEADER.search(text):
        return _parse_numpy(text)
    return _parse_google(text)


def _join(lines: list[str]) -> str:
    return " ".join(line.strip() for line in lines if line.strip())


def _summary(lines: list[str]) -> str:
    return "\n".join(lines).strip()


def _parse_google(text: str) -> Docstring:
    out = Docstring()
    summary: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if _GOOGLE_SECTION.match(line.strip()):
            i += 1
            current: str | None = None
            base_indent = 0
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
                stripped = lines[i].strip()
                item = _GOOGLE_ITEM.match(stripped)
                indent = len(lines[i]) - len(lines[i].lstrip())
                if item and (current is None or indent <= base_indent):
                    current = item.group(1).lstrip("*")
                    base_indent = indent
                    out.params[current] = item.group(3).strip()
                elif current and stripped:
                    out.params[current] = _join([out.params[current], stripped])
                i += 1
            continue
        if _GOOGLE_OTHER.match(line.strip()):
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
                i += 1
            continue
        summary.append(line)
        i += 1
    out.summary = _summary(summary)
    return out


def _parse_numpy(text: str) -> Docstring:
    out = Docstring()
    parts = _NUMPY_HEADER.split(text)
    out.summary = parts[0].strip()
    for title, body in zip(parts[1::2], parts[2::2], strict=False):
        if title.strip().lower() not in ("parameters", "params", "arguments", "other parameters"):
            continue
        current: str | None = None
        for line in body.splitlines():
            if not line.strip():
                continue
            if not line[:1].isspace():
                match = _NUMPY_ITEM.match(line.strip())
                current = match.group(1) if match else None
                if current:
                    out.params[current] = ""
            elif current:
                out.params[current] = _join([out.params[current], line])
    return out


def _parse_sphinx(text: str) -> Docstring:
    out = Docstring()
    summary: list[str] = []
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        param = _SPHINX_PARAM.match(stripped)
        if param:
            current = param.group(1)
            out.params[current] = param.group(2).strip()
        elif _SPHINX_ANY.match(stripped):
            current = None
        elif current and stripped:
            out.params[current] = _join([out.params[current], stripped])
        elif current is None:
            summary.append(line)
    out.summary = _summary(summary)
    return out
