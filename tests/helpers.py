"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    """Compare `text` with a pinned file under tests/golden/ (the file is written by hand review, never here)."""
    path = GOLDEN / name
    assert path.exists(), f"missing golden file {path}"
    assert text == path.read_text(encoding="utf-8"), f"rendered text differs from {path}"
