"""Database access: one peewee database per process, used from a thread pool.

Peewee is synchronous. Handlers never call it on the event loop: they hand a plain
function to `Database.run`, which executes it in a dedicated thread pool. Each pool
thread keeps its own connection (peewee connection state is thread-local); on
PostgreSQL those connections come from a `PooledPostgresqlDatabase` sized to the
thread pool, so the number of server connections is bounded by `db_threads`.
SQLite runs in WAL mode with a busy timeout, so readers never wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import unquote, urlparse

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from aami.server.models import database_proxy

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database could not be reached (mapped to 503 by the error middleware)."""


def open_database(url: str, *, max_connections: int = 8) -> peewee.Database:
    """A peewee database for `sqlite:///PATH` or `postgresql://...` (not yet connected)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 10000,
            },
            check_same_thread=False,
        )
    parsed = urlparse(url)
    return PooledPostgresqlDatabase(
        (parsed.path or "/").lstrip("/") or "postgres",
        user=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        max_connections=max_connections,
        stale_timeout=300,
        timeout=10,
        connect_timeout=5,
    )


def is_postgres(db: peewee.Database) -> bool:
    return isinstance(db, peewee.PostgresqlDatabase)


def write_transaction() -> Any:
    """The transaction every service write runs in (inside `Database.run`).

    A deferred SQLite transaction that reads and then writes fails with "database is
    locked" when another writer committed in between (its snapshot is stale, and
    waiting cannot fix that); `BEGIN IMMEDIATE` queues behind the other writer
    instead (busy_timeout). PostgreSQL needs nothing special.
    """
    database = database_proxy.obj
    if isinstance(database, peewee.SqliteDatabase):
        return database.atomic(lock_type="IMMEDIATE")
    return database_proxy.atomic()


def ping() -> None:
    """One round trip to the database (readiness): raises if it does not answer."""
    database_proxy.execute_sql("SELECT 1")


def tuples(query: Any) -> list[tuple[Any, ...]]:
    """A query's rows as plain tuples (peewee's stubs say model instances)."""
    return cast(list[tuple[Any, ...]], list(query.tuples()))


class Database:
    """The process's database plus the thread pool that runs every query."""

    def __init__(self, url: str, *, threads: int = 8) -> None:
        self.url = url
        self.peewee = open_database(url, max_connections=threads)
        database_proxy.initialize(self.peewee)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aami-db")

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.peewee)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` in the database thread pool and await its result."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(self._call, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, ctx.run, call)

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            self.peewee.connect(reuse_if_open=True)
        except peewee.OperationalError as exc:
            raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc
        try:
            return fn(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            # A broken connection (server restart, network cut): drop it so the
            # next call reconnects, and report the outage instead of a 500.
            if self._connection_broken():
                self.peewee.close()
                raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc
            raise

    def _connection_broken(self) -> bool:
        if not self.is_postgres:
            return False
        conn = self.peewee.connection()
        return bool(getattr(conn, "closed", 0))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if isinstance(self.peewee, PooledPostgresqlDatabase):
            self.peewee.close_all()
        elif not self.peewee.is_closed():
            self.peewee.close()
