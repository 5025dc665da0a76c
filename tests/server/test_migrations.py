"""Migrations: the migrated schema matches the models, re-running is a no-op, and
two server processes migrating one PostgreSQL at once do not collide."""

import subprocess
import sys

import peewee

from aami.server.db import Database
from aami.server.migrations import applied_versions, available_migrations, migrate
from aami.server.models import ALL_MODELS


def _columns(db: peewee.Database, table: str) -> set[str]:
    return {c.name for c in db.get_columns(table)}


def test_schema_matches_models(database_url: str) -> None:
    database = Database(database_url, threads=1)
    try:
        applied = migrate(database.peewee)
        assert [m.version for m in applied] == [m.version for m in available_migrations(
            "postgresql" if database.is_postgres else "sqlite")]
        for model in ALL_MODELS:
            table = model._meta.table_name
            expected = {f.column_name for f in model._meta.sorted_fields}
            assert _columns(database.peewee, table) == expected, table
        assert migrate(database.peewee) == []
    finally:
        database.close()


def test_concurrent_migrations(database_url: str) -> None:
    code = (
        "import sys; from aami.server.db import Database; "
        "from aami.server.migrations import migrate;"
        "d = Database(sys.argv[1], threads=1); print(len(migrate(d.peewee)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, database_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    counts = sorted(int(out.strip()) for out, _ in results)
    assert counts[-1] == len(available_migrations("sqlite")) and counts[:-1] == [0, 0]
    database = Database(database_url, threads=1)
    try:
        expected = {m.version for m in available_migrations("sqlite")}
        assert applied_versions(database.peewee) == expected
    finally:
        database.close()
