"""Execution history and security events: filters and keyset paging through a real
server, and the query plan that keeps deep pages as cheap as the first."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aami.server.db import Database
from aami.server.migrations import migrate
from aami.server.models import SecurityEvent, Target, database_proxy
from aami.server.services import execution_history
from tests.harness import ServerProcess
from tests.server.helpers import direct_db, seed_executions, unique

START = datetime(2026, 3, 1, 0, 0, 0)


def _walk(server: ServerProcess, query: str) -> list[dict[str, Any]]:
    items, cursor, pages = [], None, 0
    while True:
        url = f"/api/v1/executions?{query}" + (f"&cursor={cursor}" if cursor else "")
        reply = server.api("GET", url, role="viewer")
        assert reply.status == 200, reply.body
        items += reply.json["data"]
        cursor = reply.json["pagination"]["next_cursor"]
        pages += 1
        if cursor is None:
            return items
        assert pages < 100


def test_execution_paging_and_filters(live_server: ServerProcess) -> None:
    s = live_server
    t1 = s.api("POST", "/api/v1/targets", json_body={"hostname": unique("a")}).json["id"]
    t2 = s.api("POST", "/api/v1/targets", json_body={"hostname": unique("b")}).json["id"]
    with direct_db(s.database_url):
        ids = seed_executions(301, [t1, t2], start=START)

    everything = _walk(s, "limit=50")
    assert len(everything) == 301 and len({e["id"] for e in everything}) == 301
    keys = [(e["started_at"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)
    first = everything[0]
    assert set(first) == {"id", "target_id", "hostname", "policy_id", "script_name",
                          "script_version", "script_hash", "started_at", "finished_at",
                          "duration_ms", "exit_code", "success", "stdout", "stderr",
                          "error_message", "trigger", "force_token"}

    by_target = _walk(s, f"target_id={t2}&limit=7")
    assert len(by_target) == 150 and {e["target_id"] for e in by_target} == {t2}
    failed = _walk(s, "success=false&limit=500")
    assert len(failed) == 101 and not any(e["success"] for e in failed)
    disk = _walk(s, "script=disk&limit=33")
    assert len(disk) == 150 and {e["script_name"] for e in disk} == {"disk"}
    window = _walk(s, "since=2026-03-01T00:01:00Z&until=2026-03-01T00:02:00Z")
    assert len(window) == 120
    assert _walk(s, "policy_id=12345") == []

    one = s.api("GET", f"/api/v1/executions/{ids[5]}").json
    assert one["id"] == ids[5] and one["success"] is True and one["stdout"] == "ok"
    assert s.api("GET", f"/api/v1/executions/{uuid.uuid4()}").status == 404
    for bad, field in [("cursor=%%%", "query.cursor"), ("cursor=eyJ4IjoxfQ", "query.cursor"),
                       ("since=yesterday", "query.since"), ("limit=501", "query.limit"),
                       ("limit=0", "query.limit"), ("success=maybe", "query.success"),
                       ("target_id=x", "query.target_id"), ("colour=red", "query.colour")]:
        reply = s.api("GET", f"/api/v1/executions?{bad}")
        assert reply.status == 400 and reply.json["details"]["field"] == field, bad


def test_security_events(live_server: ServerProcess) -> None:
    s = live_server
    host = unique("n")
    tid = s.api("POST", "/api/v1/targets", json_body={"hostname": host}).json["id"]
    with direct_db(s.database_url):
        for n in range(7):
            SecurityEvent.create(id=str(uuid.UUID(int=n + 1)), target=tid,
                                 reason="hash_mismatch" if n % 2 else "unknown_key",
                                 script_name="disk", occurred_at=START + timedelta(minutes=n))
    page = s.api("GET", "/api/v1/security-events?limit=3", role="viewer").json
    assert len(page["data"]) == 3 and page["data"][0]["hostname"] == host
    rest = s.api("GET", f"/api/v1/security-events?cursor={page['pagination']['next_cursor']}"
                 ).json
    assert len(rest["data"]) == 4 and rest["pagination"]["next_cursor"] is None
    mismatches = s.api("GET", "/api/v1/security-events?reason=hash_mismatch").json["data"]
    assert len(mismatches) == 3
    recent = s.api("GET", f"/api/v1/security-events?target_id={tid}"
                          "&since=2026-03-01T00:05:00Z").json["data"]
    assert [e["occurred_at"] for e in recent] == ["2026-03-01T00:06:00.000Z",
                                                  "2026-03-01T00:05:00.000Z"]


def test_deep_pages_use_the_index(tmp_path: Path) -> None:
    """20,000 rows in SQLite: the deep-page query is an index range scan with no sort
    step, and costs about what the first page costs (the million-row figures are in
    tests/bench/executions_paging.py)."""
    database = Database(f"sqlite:///{tmp_path / 'paging.db'}", threads=1)
    try:
        migrate(database.peewee)
        database.peewee.connect(reuse_if_open=True)
        target = Target.create(hostname="n1")
        seed_executions(20_000, [target.id], start=START)
        first, cursor = execution_history.list_executions(limit=50)
        deep_rows, _ = execution_history.list_executions(limit=1, cursor=cursor)
        assert deep_rows[0]["id"] != first[-1]["id"]
        # A cursor near the end of the history.
        deep_cursor = execution_history.encode_cursor(START + timedelta(seconds=150), "z")
        query = _plan(execution_history.encode_cursor(START + timedelta(seconds=150), "z"))
        assert "SEARCH" in query and "started_at<" in query, query  # a range, not a scan
        assert "TEMP B-TREE" not in query, query  # no sort step
        fast = min(_timed(None) for _ in range(5))
        deep = min(_timed(deep_cursor) for _ in range(5))
        assert deep < fast * 5 + 0.005, (fast, deep)
    finally:
        database.close()


def _timed(cursor: str | None) -> float:
    began = time.perf_counter()
    rows, _ = execution_history.list_executions(limit=50, cursor=cursor)
    assert len(rows) == 50
    return time.perf_counter() - began


def _plan(cursor: str) -> str:
    from aami.server.models import ScriptExecution as Ex

    query = (Ex.select().order_by(Ex.started_at.desc(), Ex.id.desc())
             .where(execution_history._before(Ex.started_at, Ex.id, cursor)).limit(50))
    sql, params = query.sql()
    rows = database_proxy.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " | ".join(str(r[-1]) for r in rows)
