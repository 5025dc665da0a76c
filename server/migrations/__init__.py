"""Versioned, forward-only schema migrations.

Each migration is a pair of SQL files, `NNNN_name.sqlite.sql` and
`NNNN_name.postgresql.sql`, applied in order and recorded in `schema_migrations`.
Migrations run at server start and by `aami-server migrate`.

Two server processes may start at once on one PostgreSQL: the runner holds a
transaction-scoped advisory lock while it reads what is applied and applies the
rest, so the second process waits, then finds nothing left to do. On SQLite,
`BEGIN IMMEDIATE` takes the database's write lock for the same effect.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import peewee

from aami.server.db import is_postgres

log = logging.getLogger(__name__)

# Any constant works; it names "the AAMI migration lock" among advisory locks.
_ADVISORY_LOCK_KEY = 0x4A4D_4931
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgresql)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations(dialect: str) -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE_RE.match(entry.name)
        if match and match.group(3) == dialect:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _ensure_history_table(db: peewee.Database) -> None:
    db.execute_sql(
        'CREATE TABLE IF NOT EXISTS "schema_migrations" ('
        '"version" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(128) NOT NULL, '
        '"applied_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)'
    )


def applied_versions(db: peewee.Database) -> set[int]:
    _ensure_history_table(db)
    return {row[0] for row in db.execute_sql('SELECT "version" FROM "schema_migrations"')}


def migrate(db: peewee.Database) -> list[Migration]:
    """Apply every pending migration; returns what this call applied."""
    dialect = "postgresql" if is_postgres(db) else "sqlite"
    db.connect(reuse_if_open=True)
    if is_postgres(db):
        return _migrate_postgres(db)
    return _migrate_sqlite(db, available_migrations(dialect))


def _migrate_postgres(db: peewee.Database) -> list[Migration]:
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
        _ensure_history_table(db)
        return _apply_pending(db, available_migrations("postgresql"))


def _migrate_sqlite(db: peewee.Database, migrations: list[Migration]) -> list[Migration]:
    # peewee's atomic() issues a deferred BEGIN; take the write lock up front instead.
    db.execute_sql("BEGIN IMMEDIATE")
    try:
        _ensure_history_table(db)
        applied = _apply_pending(db, migrations)
    except BaseException:
        db.execute_sql("ROLLBACK")
        raise
    db.execute_sql("COMMIT")
    return applied


def _apply_pending(db: peewee.Database, migrations: list[Migration]) -> list[Migration]:
    done = {row[0] for row in db.execute_sql('SELECT "version" FROM "schema_migrations"')}
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in _statements(migration.sql):
            db.execute_sql(statement)
        db.execute_sql(
            'INSERT INTO "schema_migrations" ("version", "name") VALUES (%s, %s)'
            if is_postgres(db)
            else 'INSERT INTO "schema_migrations" ("version", "name") VALUES (?, ?)',
            (migration.version, migration.name),
        )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration)
    return applied


def pending_migrations(db: peewee.Database) -> list[Migration]:
    dialect = "postgresql" if is_postgres(db) else "sqlite"
    done = applied_versions(db)
    return [m for m in available_migrations(dialect) if m.version not in done]
