"""The trust package stays pure: no file, process, network, database or clock access.

The agent, the server and the CLI must run the very same checks, and a reviewer must
be able to read them without wondering what they touch. Imports are read from the
source (AST), so a forbidden import anywhere in a module fails, even inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TRUST_DIR = Path(__file__).resolve().parents[2] / "trust"
MODULES = sorted(TRUST_DIR.glob("*.py"))

FORBIDDEN_MODULES = {
    "os", "sys", "io", "pathlib", "shutil", "tempfile", "glob", "fcntl", "mmap",
    "socket", "ssl", "select", "selectors", "asyncio", "subprocess", "multiprocessing",
    "threading", "signal", "http", "urllib", "requests", "httpx", "aiohttp",
    "peewee", "sqlite3", "psycopg2", "logging", "time", "random", "secrets",
    "pickle", "marshal", "ctypes", "importlib", "builtins", "yaml", "jsonschema",
}  # fmt: skip
FORBIDDEN_CALLS = {"open", "exec", "eval", "compile", "__import__", "input", "print"}
CLOCK_ATTRIBUTES = {"now", "utcnow", "today", "time", "monotonic"}


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_modules_found() -> None:
    assert {p.name for p in MODULES} >= {"keys.py", "envelope.py", "verify.py", "schema.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = _imports(tree) & FORBIDDEN_MODULES
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_calls_and_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} calls {node.func.id}"
            )
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_ATTRIBUTES:
            raise AssertionError(
                f"{path.name}:{node.lineno} reads the clock ({node.attr}); take `now`"
            )


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    # Guard against a test that cannot fail: the detector does see a bad module.
    tree = ast.parse("import os.path\nfrom aiohttp import web\ndef f():\n    import socket\n")
    assert _imports(tree) & FORBIDDEN_MODULES == {"os", "aiohttp", "socket"}
