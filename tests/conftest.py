"""Shared fixtures: the two databases every server test runs against.

SQLite always; PostgreSQL when reachable (127.0.0.1:5432, trust auth, or
AAMI_TEST_PG_DSN). Under CI (CI=true) PostgreSQL is required: its absence fails the
run instead of skipping. Each test session gets its own PostgreSQL database, so
several test runs on one machine never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not _postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI and is not reachable at {PG_ADMIN_DSN}")
        pytest.skip("PostgreSQL not reachable (set CI=true to make this a failure)")
    name = f"aami_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_connect(PG_ADMIN_DSN)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL, once per backend. PostgreSQL tests share one database per
    session; tests that need an empty schema use the `fresh_database_url` fixture."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aami.db'}"
    pg: str = request.getfixturevalue("postgres_server_url")
    return pg
