"""The packages stand on each other: `sandbox` at the bottom, `tools` on it, `agent` on top.

Every import in every module counts, those inside functions and under TYPE_CHECKING too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BELOW = {"sandbox": set(), "tools": {"sandbox"}, "agent": {"tools", "sandbox"}}  # what each package may import


def imports(path: Path) -> set[str]:
    """The top-level packages of the project that `path` imports (relative imports stay in their package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.split(".")[0])
    return found & set(BELOW)


@pytest.mark.parametrize("package", sorted(BELOW))
def test_no_package_imports_one_above_it(package):
    offending = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        above = imports(path) - BELOW[package] - {package}
        if above:
            offending[str(path.relative_to(ROOT))] = sorted(above)
    assert offending == {}


def test_the_check_sees_what_it_must():
    assert imports(ROOT / "agent" / "loop.py") >= {"agent", "tools"}
    assert "sandbox" in imports(ROOT / "tools" / "python.py")
    assert "tools" in imports(ROOT / "tools" / "registry.py")  # import_module("tools.python") is seen too


def test_no_import_circle_between_modules():
    """No module reaches itself through imports (the mcp server/tool and sessions/training loops are gone)."""
    modules = {}
    for package in BELOW:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module is not None or isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            edges[name] |= {t for t in targets if t in modules and t != name}
    for package_init in [n for n in modules if modules[n].name == "__init__.py"]:
        edges[package_init] = set()  # a package's face hands names on lazily; it is no link in a chain

    def reaches(start: str) -> bool:
        seen, todo = set(), list(edges[start])
        while todo:
            current = todo.pop()
            if current == start:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(edges[current])
        return False

    assert [name for name in sorted(modules) if reaches(name)] == []
