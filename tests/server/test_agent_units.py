"""The Agent API's pure rules, and the grouped execution write on a real SQLite file."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from aami.server.api.agent.routes import _etag_matches
from aami.server.db import open_database
from aami.server.migrations import migrate
from aami.server.models import AgentStatus, ScriptExecution, Target, database_proxy
from aami.server.services.agent_config import GroupInfo, effective_intervals, group_names
from aami.server.services.execution_ingest import MARKER, prepare, store, truncate_tail


def test_each_interval_comes_from_the_highest_priority_group_that_sets_it() -> None:
    groups = [GroupInfo(1, "low", 1, 120, 90), GroupInfo(2, "high", 10, 15, None),
              GroupInfo(3, "tie-newer", 10, 5, None)]
    chosen = effective_intervals(groups, default_poll=30, default_heartbeat=30)
    assert (chosen.poll_interval_seconds, chosen.heartbeat_interval_seconds) == (15, 90)
    assert group_names(groups) == ["high", "tie-newer", "low"]
    none = effective_intervals([], default_poll=30, default_heartbeat=45)
    assert (none.poll_interval_seconds, none.heartbeat_interval_seconds) == (30, 45)


def test_truncate_tail_keeps_the_end_within_the_byte_limit() -> None:
    assert truncate_tail("short", 100) == "short"
    text = "".join(f"{i}\n" for i in range(10_000))
    cut = truncate_tail(text, 1000)
    assert len(cut.encode()) <= 1000 and cut.endswith("9999\n")
    assert cut.startswith(MARKER.split("{")[0])
    multibyte = truncate_tail("é" * 1000, 101)  # 2 bytes each: never half a character
    assert len(multibyte.encode()) <= 101 and set(multibyte.split("\n", 1)[1]) == {"é"}


@pytest.mark.parametrize(("header", "matches"), [
    (None, False), ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True),
    ('"abd"', False), ("abc", True)])
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert _etag_matches(header, "abc") is matches


def _item(exec_id: str, success: bool = True) -> dict[str, object]:
    return {"id": exec_id, "script_name": "s", "script_version": "1.0.0",
            "script_hash": "a" * 64, "started_at": "2026-01-01T00:00:00Z",
            "success": success, "stdout": "x" * 5000}


def test_grouped_store_counts_each_request_on_its_own(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'unit.db'}")
    database_proxy.initialize(db)
    migrate(db)
    try:
        one, two = Target.create(hostname="one").id, Target.create(hostname="two").id
        AgentStatus.create(target=one)
        shared, a, b = (str(uuid.uuid4()) for _ in range(3))
        first = prepare(one, [_item(shared), _item(a, success=False), _item(a)], (), 1024)
        second = prepare(two, [_item(shared), _item(b)], (), 1024)
        results = store([first, second])
        assert [(r.accepted, r.duplicates, r.succeeded) for r in results] == [
            (2, 1, 1), (1, 1, 1)]
        assert ScriptExecution.get_by_id(shared).target_id == one  # the first one wins
        assert len(ScriptExecution.get_by_id(a).stdout.encode()) <= 1024
        again = store([prepare(one, [_item(shared), _item(a)], (), 1024)])
        assert (again[0].accepted, again[0].duplicates) == (0, 2)
        assert ScriptExecution.select().count() == 3
    finally:
        db.close()
