"""Shared settings of the three spec files (imported by them; not a PyInstaller hook).

Each binary excludes what its program never imports, so that every node does not
carry (and unpack at each start) the server's web stack. The lists are checked by
tests/binaries: the agent binary must still register, verify and run a script.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "packaging"))
from package_root import make_package_root  # noqa: E402

# The analysis reads `aami.*` from a tree of symlinks to the component folders
# (packaging/package_root.py), exactly as the package is installed.
PACKAGE_ROOT = str(make_package_root())

# Never needed by any of the three programs at run time.
COMMON_EXCLUDES = [
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "lib2to3", "pydoc_data",
    "test", "unittest", "doctest", "distutils", "setuptools", "pkg_resources", "pip",
    "ensurepip", "venv", "xmlrpc", "curses", "readline", "sqlite3.test",
    "PyInstaller", "staticx", "pytest", "hypothesis", "schemathesis", "mypy", "ruff",
    "playwright",
]

# The agent speaks HTTP with http.client and serves /metrics itself (agent/client.py,
# agent/metrics.py): the server's web and database stack stays out of its binary.
AGENT_EXCLUDES = [
    *COMMON_EXCLUDES,
    "aami.server", "aami.cli", "aami.bundle", "aami.policyfile",
    "aiohttp", "aiohttp_jinja2", "multidict", "yarl", "frozenlist", "aiosignal",
    "propcache", "aiohappyeyeballs", "async_timeout", "attr", "attrs",
    "peewee", "playhouse", "psycopg2", "jinja2", "markupsafe", "prometheus_client",
    "jsonschema", "jsonschema_specifications", "referencing", "rpds", "fastjsonschema",
    "sqlite3", "_sqlite3", "xml", "pyexpat", "_decimal", "decimal", "lzma", "_lzma",
    "bz2", "_bz2", "multiprocessing", "concurrent.futures.process", "ctypes.macholib",
    "pycparser",  # (cffi's _cffi_backend stays: PyNaCl's libsodium binding loads it)
    # Signing and key generation are the operator's: the agent only verifies (PyNaCl).
    "cryptography",
    # CJK codecs: the agent reads and writes UTF-8 only.
    "_codecs_cn", "_codecs_hk", "_codecs_iso2022", "_codecs_jp", "_codecs_kr", "_codecs_tw",
    "_multibytecodec",
]

# The operator CLI talks to the server over urllib and builds bundles: no server stack.
CLI_EXCLUDES = [
    *COMMON_EXCLUDES,
    "aami.server", "aami.agent",
    "aiohttp", "aiohttp_jinja2", "multidict", "yarl", "frozenlist", "aiosignal",
    "propcache", "aiohappyeyeballs", "peewee", "playhouse", "psycopg2", "jinja2",
    "markupsafe", "prometheus_client", "jsonschema", "jsonschema_specifications",
    "referencing", "rpds", "fastjsonschema", "sqlite3", "_sqlite3",
]

SERVER_EXCLUDES = [*COMMON_EXCLUDES, "aami.agent", "aami.cli", "aami.bundle"]


def server_datas() -> list[tuple[str, str]]:
    """Templates, static files and SQL migrations, at the same package-relative places
    as in the source tree: importlib.resources and jinja2.PackageLoader find them there."""
    server = os.path.join(ROOT, "server")
    datas = [(os.path.join(server, "templates"), "aami/server/templates"),
             (os.path.join(server, "static"), "aami/server/static")]
    migrations = os.path.join(server, "migrations")
    datas += [(os.path.join(migrations, name), "aami/server/migrations")
              for name in sorted(os.listdir(migrations)) if name.endswith(".sql")]
    # Served at GET /install-agent.sh when no installed release holds a copy.
    datas.append((os.path.join(ROOT, "packaging", "install-agent.sh"), "aami/packaging"))
    return datas


def cli_datas() -> list[tuple[str, str]]:
    """What `aami bundle build` packs besides the binaries: the installers, the units
    and docs/install.md, at the places bundle/build.py looks for them relative to the
    `aami` package (the project root in the source tree, aami/ inside the binary)."""
    systemd = os.path.join(ROOT, "systemd")
    datas = [(os.path.join(ROOT, "packaging", name), "aami/packaging")
             for name in ("install.sh", "install-agent.sh")]
    datas.append((os.path.join(ROOT, "docs", "install.md"), "aami/docs"))
    datas += [(os.path.join(systemd, name), "aami/systemd")
              for name in sorted(os.listdir(systemd))
              if name.endswith((".service", ".conf"))]
    return datas
