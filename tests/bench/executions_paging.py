"""Benchmark: keyset paging of execution history at a million rows.

    .venv/bin/python -m tests.bench.executions_paging [--rows 1000000] [--database URL]

Seeds ROWS executions (SQLite file in a temp dir by default, or an empty database
given by URL) with executemany, then times `execution_history.list_executions`
(the code behind GET /api/v1/executions) for the first page and for pages deep in
the history reached by cursor, and, for contrast, the same depth reached by OFFSET.
Prints the median of several runs per case in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from aami.server.db import Database
from aami.server.migrations import migrate
from aami.server.models import ScriptExecution, Target, database_proxy
from aami.server.services import execution_history

START = datetime(2025, 1, 1)
TARGETS = 1000


def seed(rows: int) -> None:
    Target.insert_many([{"hostname": f"node-{n:05d}"} for n in range(TARGETS)]).execute()
    target_ids = [t.id for t in Target.select(Target.id).order_by(Target.id)]
    sql = ("INSERT INTO script_executions (id, target_id, script_name, script_version, "
           "script_hash, started_at, success, stdout, stderr, trigger, received_at, "
           "exit_code, duration_ms) VALUES (%s)")
    marks = ", ".join(["?" if not _is_pg() else "%s"] * 13)
    with database_proxy.atomic():  # one transaction: no fsync per row
        _insert(rows, target_ids, sql % marks)


def _insert(rows: int, target_ids: list[int], sql: str) -> None:
    cursor = database_proxy.cursor()
    batch: list[tuple[object, ...]] = []
    for n in range(rows):
        started = START + timedelta(seconds=n * 3)
        batch.append((f"{n:08x}-0000-4000-8000-000000000000", target_ids[n % TARGETS],
                      "disk" if n % 4 else "mem", "1.0.0", "ab" * 32, started, n % 7 != 0,
                      "ok", "", "schedule", started, 0, 12))
        if len(batch) == 20_000:
            cursor.executemany(sql, batch)
            batch = []
    if batch:
        cursor.executemany(sql, batch)


def _is_pg() -> bool:
    return "Postgres" in type(database_proxy.obj).__name__


def timed(fn: Callable[[], object], runs: int = 7) -> float:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def cursor_at(depth: int, **filters: object) -> str:
    """The cursor a client holds after paging `depth` rows (found once, by OFFSET)."""
    query = ScriptExecution.select(ScriptExecution.started_at, ScriptExecution.id)
    if filters.get("target_id"):
        query = query.where(ScriptExecution.target == filters["target_id"])
    row = query.order_by(ScriptExecution.started_at.desc(), ScriptExecution.id.desc()) \
        .offset(depth - 1).limit(1).get()
    return execution_history.encode_cursor(row.started_at, row.id)


def offset_page(depth: int) -> list[ScriptExecution]:
    return list(ScriptExecution.select().order_by(
        ScriptExecution.started_at.desc(), ScriptExecution.id.desc()).offset(depth).limit(50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", help="an EMPTY database URL (default: temp SQLite)")
    args = parser.parse_args()
    url = args.database or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    database = Database(url, threads=1)
    migrate(database.peewee)
    database.peewee.connect(reuse_if_open=True)
    began = time.perf_counter()
    seed(args.rows)
    database.peewee.execute_sql("ANALYZE")
    print(f"seeded {args.rows:,} executions on {url.split(':')[0]} in "
          f"{time.perf_counter() - began:.1f}s")
    list_page = execution_history.list_executions
    target_id = Target.select(Target.id).order_by(Target.id).first().id
    cases: list[tuple[str, Callable[[], object]]] = [
        ("page 1 (no cursor)", lambda: list_page(limit=50)),
    ]
    for depth in (args.rows // 2, args.rows - 100):
        cur = cursor_at(depth)
        cases.append((f"cursor at row {depth:,}", partial(list_page, limit=50, cursor=cur)))
    cases.append((f"target {target_id}, page 1",
                  lambda: list_page(limit=50, target_id=target_id)))
    deep_target = cursor_at(args.rows // TARGETS - 60, target_id=target_id)
    cases.append((f"target {target_id}, cursor near its oldest row",
                  lambda: list_page(limit=50, target_id=target_id, cursor=deep_target)))
    cases.append(("script=mem & success=false, page 1",
                  lambda: list_page(limit=50, script="mem", success=False)))
    cases.append((f"OFFSET {args.rows // 2:,} (for contrast)",
                  lambda: offset_page(args.rows // 2)))
    for label, fn in cases:
        print(f"  {label:<45} {timed(fn):8.2f} ms")
    database.close()


if __name__ == "__main__":
    main()
