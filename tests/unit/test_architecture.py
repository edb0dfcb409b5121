"""The import rules of docs/architecture.md, checked on every module's imports.

Each module belongs to a stage (its first name under ``hookgate``); a stage may import
only the stages listed for it. Imports under ``if TYPE_CHECKING:`` are type hints,
not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import hookgate

PACKAGE = Path(hookgate.__file__).parent
BASE = {"hookgate"}  # the package root holds only __version__

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "wire": set(),
    "metrics": set(),
    "addresses": set(),
    "filters": set(),
    # Starting, watching and restarting the daemon's child processes (any stage's).
    "children": set(),
    "transform": {"errors", "wire"},
    "providers": {"errors", "wire"},
    "config": {"errors", "wire", "addresses", "providers", "filters", "transform"},
    "store": {"errors", "wire", "metrics", "config"},
    "inbound": {
        "errors",
        "wire",
        "metrics",
        "addresses",
        "config",
        "providers",
        "store",
        "filters",
        "children",
    },
    "outbound": {
        "errors",
        "wire",
        "metrics",
        "addresses",
        "config",
        "store",
        "transform",
        "children",
    },
    "admin": {"errors", "wire", "metrics", "config", "store", "outbound", "filters"},
    "logs": {"config"},
    "daemon": {
        "errors",
        "wire",
        "metrics",
        "addresses",
        "config",
        "providers",
        "store",
        "inbound",
        "outbound",
        "admin",
        "logs",
        "filters",
        "transform",
        "children",
    },
    # inbound and children: the main of an ingest process (cli/ingest.py).
    "cli": {
        "errors",
        "wire",
        "config",
        "providers",
        "outbound",
        "inbound",
        "admin",
        "logs",
        "transform",
        "children",
    },
    "__main__": {"cli"},
}
# Imported only inside a function (so that `hookgate --help` loads no server code).
LAZY_ONLY: dict[str, set[str]] = {"cli": {"daemon", "store"}}
FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "store": {"aiohttp"},
    "providers": {"aiohttp", "aiosqlite"},
    "config": {"aiohttp", "aiosqlite"},
    "errors": {"aiohttp", "aiosqlite"},
    "wire": {"aiohttp", "aiosqlite"},
    "filters": {"aiohttp", "aiosqlite"},
    "transform": {"aiohttp", "aiosqlite"},
}


def modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def stage_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def imports(tree: ast.Module) -> Iterator[tuple[str, bool]]:
    """(imported module, imported inside a function) for every import, type hints aside."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (i for n in child.orelse for i in walk_one(n, in_function))
                continue
            yield from walk_one(child, in_function)

    def walk_one(node: ast.AST, in_function: bool) -> Iterator[tuple[str, bool]]:
        if isinstance(node, ast.Import):
            yield from ((alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "hookgate":
                yield from ((f"hookgate.{alias.name}", in_function) for alias in node.names)
            else:
                yield node.module, in_function
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from walk(node, inner)

    yield from walk(tree, False)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def violations(path: Path) -> list[str]:
    return violations_in(stage_of(path), path.read_text(encoding="utf-8"))


def violations_in(stage: str, source: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    for module, lazy in imports(tree):
        top, _, rest = module.partition(".")
        if top != "hookgate":
            if top in FORBIDDEN_LIBRARIES.get(stage, set()):
                found.append(f"{stage} imports {module}")
            continue
        target = rest.split(".")[0] if rest else "hookgate"
        if target in ("__version__", "hookgate") or target == stage:
            continue
        allowed = ALLOWED[stage] | (LAZY_ONLY.get(stage, set()) if lazy else set())
        if target not in allowed:
            found.append(f"{stage} imports {module}{' (lazily)' if lazy else ''}")
    return found


def test_every_module_belongs_to_a_known_stage() -> None:
    stages = {stage_of(p) for p in modules()}
    assert stages <= set(ALLOWED), stages - set(ALLOWED)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_flow(path: Path) -> None:
    assert violations(path) == []


def test_the_rules_catch_what_they_forbid() -> None:
    source = """
from typing import TYPE_CHECKING
from hookgate.inbound import listener
import aiohttp
from hookgate import config
if TYPE_CHECKING:
    from hookgate.admin import api
def serve():
    from hookgate import daemon
"""
    assert violations_in("store", source) == [
        "store imports hookgate.inbound",
        "store imports aiohttp",
        "store imports hookgate.daemon (lazily)",
    ]
    assert violations_in("cli", "def serve():\n    from hookgate import daemon\n") == []
    assert violations_in("cli", "from hookgate import daemon\n") == ["cli imports hookgate.daemon"]
