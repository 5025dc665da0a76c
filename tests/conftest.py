"""Shared fixtures: the two databases every server test runs against.

SQLite always; PostgreSQL when reachable (127.0.0.1:5432, trust auth, or
AAMI_TEST_PG_DSN). Under CI (CI=true) PostgreSQL is required: its absence fails the
run instead of skipping. Each test gets its own PostgreSQL database, so tests and
several test runs on one machine never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness import ServerProcess, require

PG_ADMIN_DSN = os.environ.get("AAMI_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_connect(dsn: str):  # type: ignore[no-untyped-def]
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=3)
    conn.autocommit = True
    return conn


def _postgres_available() -> bool:
    try:
        _pg_connect(PG_ADMIN_DSN).close()
    except Exception:
        return False
    return True


def _create_database() -> str:
    name = f"aami_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_connect(PG_ADMIN_DSN)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name


def _drop_database(name: str) -> None:
    admin = _pg_connect(PG_ADMIN_DSN)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _require_postgres() -> None:
    require(_postgres_available(),
            f"PostgreSQL is not reachable at {PG_ADMIN_DSN} (required under CI=true)")


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A URL of a new, empty database of the given backend; removed afterwards.
    PostgreSQL databases cost ~50 ms to create, so every test gets its own."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'aami-{uuid.uuid4().hex[:8]}.db'}"
        return
    _require_postgres()
    name = _create_database()
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once per backend."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `aami-server serve` process on an empty database, once per backend."""
    with fresh_database(request.param, tmp_path) as url, ServerProcess.start(url, tmp_path) as srv:
        yield srv


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_server(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module and backend, for tests that only add rows
    with names of their own (cheaper than a process per test)."""
    directory = tmp_path_factory.mktemp("server")
    with fresh_database(request.param, directory) as url, \
            ServerProcess.start(url, directory) as srv:
        yield srv
