"""The package stays readable: small modules with one job each (docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vaultbridge"
STRICT = ("engine", "controller")  # the orchestration: the tightest limits
LIMITS = {"strict": (400, 60), "elsewhere": (550, 100)}  # lines per module, per function


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_sizes(path: Path) -> None:
    part = path.relative_to(PACKAGE).parts[0]
    module_limit, function_limit = LIMITS["strict" if part in STRICT else "elsewhere"]
    source = path.read_text()
    assert len(source.splitlines()) <= module_limit, f"{path.name}: split it"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > function_limit
    ]
    assert not long, f"{path.name}: over {function_limit} lines: {', '.join(long)}"


def test_every_package_says_what_it_is_for() -> None:
    missing = [
        str(init.relative_to(PACKAGE))
        for init in PACKAGE.rglob("__init__.py")
        if ast.get_docstring(ast.parse(init.read_text())) is None
    ]
    assert not missing
