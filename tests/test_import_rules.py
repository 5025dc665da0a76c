"""The layers of the house, as a table the import graph must obey.

Imports are read from the source (AST), lazy ones inside functions included; imports
under `if TYPE_CHECKING:` are annotations only and do not count. Each module belongs
to a room; a room may import only the rooms its row names (and itself):

    component rooms  trust, units, policyfile, bundle, agent, cli, server.*
    server rooms     base      models, database, config, errors, schemas, pure rules
                     services  what the server does (no HTTP)
                     http      routing, OpenAPI, app keys, auth, caches, error mapping
                     api       REST and Agent API handlers
                     web       the web UI (through services, never the models)
                     main      composition: app factory, serve, CLI, supervisor, import

So the agent never imports the server, the server never imports the CLI, the web UI
reaches data only through services, and trust imports nothing of ours. The trust
package is also pure: no I/O module, no clock (tests below). And the whole graph has
no circle.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = ("agent", "server", "trust", "bundle", "cli", "policyfile", "units")

SERVER_MAIN = {"app", "serve", "cli", "supervisor", "bundle_import"}
SERVER_HTTP = {"routing", "openapi", "appkeys", "http_errors", "http_metrics", "auth", "caches",
               "background"}

ALLOWED: dict[str, set[str]] = {
    "trust": set(),
    "units": set(),
    "policyfile": {"trust", "units"},
    "bundle": {"trust", "units"},
    "agent": {"trust", "units"},
    "cli": {"trust", "units", "bundle", "policyfile"},
    "server.base": {"trust", "units"},
    "server.services": {"server.base", "trust", "units"},
    "server.http": {"server.base", "server.services", "trust", "units"},
    "server.api": {"server.base", "server.services", "server.http", "trust", "units"},
    "server.web": {"server.base", "server.services", "server.http", "trust", "units"},
    "server.main": {"server.base", "server.services", "server.http", "server.api",
                    "server.web", "trust", "units", "bundle", "policyfile"},
}
# Finer rules inside a permitted arrow: room -> modules it must not import.
FORBIDDEN_MODULES = {
    "server.web": {"aami.server.models"},  # the UI's data comes through services
    "server.api": {"aami.server.models"},  # handlers stay thin: services do the work
}
# Third-party libraries a room must not import (HTTP belongs above the services).
FORBIDDEN_LIBRARIES = {
    "server.base": {"aiohttp", "aiohttp_jinja2", "jinja2"},
    "server.services": {"aiohttp", "aiohttp_jinja2", "jinja2"},
    "agent": {"aiohttp", "peewee", "jinja2", "prometheus_client", "jsonschema"},
    "trust": {
        "os", "sys", "io", "pathlib", "shutil", "tempfile", "glob", "fcntl", "mmap",
        "socket", "ssl", "select", "selectors", "asyncio", "subprocess",
        "multiprocessing", "threading", "signal", "http", "urllib", "requests", "httpx",
        "aiohttp", "peewee", "sqlite3", "psycopg2", "logging", "time", "random",
        "secrets", "pickle", "marshal", "ctypes", "importlib", "builtins", "yaml",
        "jsonschema",
    },
}  # fmt: skip


@dataclass(frozen=True)
class Import:
    target: str  # a module of ours (resolved), or a third-party top-level name
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    name = "aami." + ".".join(parts)
    return name.removesuffix(".__init__")


def room_of(module: str) -> str:
    parts = module.split(".")[1:]
    if parts[0] != "server":
        return parts[0]
    if len(parts) == 1:
        return "server.base"
    if parts[1] in ("services", "api", "web"):
        return f"server.{parts[1]}"
    if parts[1] in SERVER_MAIN:
        return "server.main"
    return "server.http" if parts[1] in SERVER_HTTP else "server.base"


def _type_checking_only(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports_of(source: str, modules: set[str]) -> list[Import]:
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    found: list[Import] = []

    def ours(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = ([f"{node.module}.{alias.name}" for alias in node.names]
                     if node.module.startswith("aami") else [node.module])
        else:
            continue
        for name in names:
            target = ours(name) if name.startswith("aami") else name.split(".")[0]
            found.append(Import(target, node.lineno))
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for component in COMPONENTS
            for path in sorted((REPO / component).rglob("*.py"))}


MODULES = all_modules()
GRAPH = {name: imports_of(path.read_text(), set(MODULES)) for name, path in MODULES.items()}


def violations(graph: dict[str, list[Import]]) -> list[str]:
    found = []
    for module, imports in sorted(graph.items()):
        room = room_of(module)
        for imp in imports:
            where = f"{module}:{imp.line} imports {imp.target}"
            if imp.target.startswith("aami."):
                other = room_of(imp.target)
                if other != room and other not in ALLOWED[room]:
                    found.append(f"{where} ({room} may not import {other})")
                elif imp.target in FORBIDDEN_MODULES.get(room, set()):
                    found.append(f"{where} ({room} may not import it)")
            elif imp.target in FORBIDDEN_LIBRARIES.get(room, set()):
                found.append(f"{where} ({room} may not use {imp.target})")
            elif imp.target in COMPONENTS:
                found.append(f"{where} (a bare top-level name: import aami.{imp.target})")
    return found


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = {m: sorted({i.target for i in imps if i.target in graph and i.target != m})
             for m, imps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_room_with_rules() -> None:
    assert len(MODULES) > 100
    assert {room_of(m) for m in MODULES} <= set(ALLOWED)


def test_no_import_breaks_a_layer_rule() -> None:
    assert violations(GRAPH) == []


def test_the_import_graph_has_no_circle() -> None:
    assert cycles(GRAPH) == []


def test_the_rules_catch_what_they_forbid() -> None:
    # Guard against a test that cannot fail: each kind of breach is seen.
    modules = {"aami.agent.poller", "aami.server.models", "aami.server.web.views.x",
               "aami.server.services.a", "aami.server.services.b", "aami.trust.keys"}
    bad = {
        "aami.agent.poller": imports_of("from aami.server.models import Target", modules),
        "aami.server.web.views.x": imports_of(
            "def f():\n    from aami.server.models import Policy\n", modules),
        "aami.server.services.a": imports_of(
            "from aiohttp import web\nfrom aami.server.services import b", modules),
        "aami.server.services.b": imports_of("import aami.server.services.a", modules),
        "aami.trust.keys": imports_of("import os.path\nimport agent", modules),
    }
    found = "\n".join(violations(bad))
    assert "agent may not import server.base" in found
    assert "server.web may not import it" in found
    assert "server.services may not use aiohttp" in found
    assert "trust may not use os" in found
    assert "bare top-level name" in found
    assert cycles(bad) == [["aami.server.services.a", "aami.server.services.b"]]
    hidden = imports_of("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from aami.server.models import Target\n", modules)
    assert [i.target for i in hidden] == ["typing"]


def test_every_package_folder_is_installed() -> None:
    """pyproject.toml lists the packages by hand (package-dir mapping): a new folder
    missing there would work from the checkout and be absent from every install."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {module_name(init.parent / "__init__.py") for component in COMPONENTS
                for init in (REPO / component).rglob("__init__.py")}
    assert set(config["packages"]) == packages
    assert {k: v for k, v in config["package-dir"].items()} == {
        f"aami.{c}": c for c in COMPONENTS}


# The trust package is pure as well: what it verifies must not depend on what it touches.

TRUST_MODULES = sorted((REPO / "trust").glob("*.py"))
FORBIDDEN_CALLS = {"open", "exec", "eval", "compile", "__import__", "input", "print"}
CLOCK_ATTRIBUTES = {"now", "utcnow", "today", "time", "monotonic"}


@pytest.mark.parametrize("path", TRUST_MODULES, ids=lambda p: p.name)
def test_trust_makes_no_io_calls_and_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} calls {node.func.id}")
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_ATTRIBUTES:
            raise AssertionError(f"{path.name}:{node.lineno} reads the clock "
                                 f"({node.attr}); take `now`")


def test_room_counts_for_the_record() -> None:
    # Every room holds code: a renamed folder would silently empty a row of the table.
    per_room: dict[str, int] = defaultdict(int)
    for module in MODULES:
        per_room[room_of(module)] += 1
    assert all(per_room[room] for room in ALLOWED), dict(per_room)
