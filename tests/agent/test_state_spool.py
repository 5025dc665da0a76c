"""State file and spool through real files, including a real `kill -9` mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from aami.agent.atomicfile import atomic_write
from aami.agent.records import ExecutionReport
from aami.agent.reporter import Reporter
from aami.agent.spool import INTERRUPTED_MESSAGE, EventSpool, ExecutionSpool, Spool
from aami.agent.state import AgentState, StateStore
from tests.agent.conftest import InMemoryServer

ROOT = Path(__file__).parents[2]


def test_atomic_write_replaces_whole_file_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"one")
    atomic_write(target, b"two", mode=0o640)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temp files left


def test_state_round_trip_is_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = AgentState(target_id=3, agent_token="secret-token-xyz", highest_versions={"a": "1.2.0"})
    store.save(state)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    again = store.load()
    assert again.target_id == 3 and again.highest_versions == {"a": "1.2.0"}


def test_corrupted_state_is_set_aside_and_agent_starts_fresh(tmp_path: Path, caplog) -> None:
    (tmp_path / "state.json").write_bytes(b'{"version": 1, "target_id": 3, "assig')
    state = StateStore(tmp_path).load()
    assert state == AgentState()
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b'{"version": 1')
    assert not (tmp_path / "state.json").exists()
    assert "corrupted" in caplog.text


def test_wrong_shape_state_is_also_set_aside(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "assignments": "nope"}))
    assert StateStore(tmp_path).load() == AgentState()
    assert list(tmp_path.glob("state.json.corrupt-*"))


def test_spool_survives_a_new_instance_and_keeps_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=10)
    for i in range(3):
        spool.put({"id": f"id-{i}", "n": i})
    again = Spool(tmp_path, max_records=10)
    assert [r["n"] for _, r in again.pending(10)] == [0, 1, 2]


def test_spool_is_bounded_and_counts_what_it_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=3)
    for i in range(5):
        spool.put({"id": f"id-{i}", "n": i})
    assert [r["n"] for _, r in spool.pending(10)] == [2, 3, 4]
    assert spool.dropped == 2
    assert Spool(tmp_path, max_records=3).dropped == 2  # persisted


def test_unreadable_spool_record_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=10)
    spool.put({"id": "good"})
    (tmp_path / "00000000000000000001-bad.json").write_text("{torn")
    assert [r["id"] for _, r in spool.pending(10)] == ["good"]
    assert (tmp_path / "00000000000000000001-bad.json.corrupt").exists()


CRASHING_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from aami.agent.executor import ExecutionRequest, execute, utc_now
    from aami.agent.records import ExecutionReport
    from aami.agent.spool import ExecutionSpool

    spool = ExecutionSpool(sys.argv[1], max_records=100)
    skeleton = ExecutionReport(
        id="6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0001", policy_id=4, script_name="slow",
        script_version="1.0.0", script_hash="a" * 64, started_at=utc_now(), trigger="schedule")
    spool.mark_running(skeleton)
    print("started", flush=True)
    body = f"echo $$ > {sys.argv[2]}; exec sleep 300".encode()
    req = ExecutionRequest(skeleton.id, "slow", "1.0.0", body, "bash", {}, 600)
    result = asyncio.run(execute(req, output_limit=1000, kill_grace=1))
    spool.complete(skeleton)
    """
)


def test_kill_9_mid_run_is_reported_interrupted_exactly_once(tmp_path: Path) -> None:
    spool_dir = tmp_path / "executions"
    pidfile = tmp_path / "script.pid"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(spool_dir), str(pidfile)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # The orphaned script is what systemd's KillMode=control-group reaps on a real node.
    os.kill(int(pidfile.read_text()), signal.SIGKILL)

    spool = ExecutionSpool(spool_dir, max_records=100)
    assert spool.running_ids() == ["6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0001"]
    assert spool.recover_interrupted("2026-01-01T00:00:00.000Z") == 1
    assert spool.recover_interrupted("2026-01-01T00:00:01.000Z") == 0  # a second restart
    server = InMemoryServer()
    server.issued = ["t"]
    server.token = "t"
    reporter = Reporter(server, spool, EventSpool(tmp_path / "events", max_records=10),
                        batch_size=10)
    asyncio.run(reporter.flush())
    ExecutionSpool(spool_dir, max_records=100).recover_interrupted("2026-01-01T00:00:02.000Z")
    asyncio.run(reporter.flush())
    assert list(server.executions) == ["6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0001"]
    record = server.executions["6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0001"]
    assert record["error_message"] == INTERRUPTED_MESSAGE and record["success"] is False
    assert record["exit_code"] is None and record["policy_id"] == 4


def test_crash_between_record_and_marker_removal_reports_once(tmp_path: Path) -> None:
    spool = ExecutionSpool(tmp_path, max_records=10)
    skeleton = ExecutionReport(id="abc-1", policy_id=None, script_name="s", script_version="1",
                               script_hash="a", started_at="t")
    spool.mark_running(skeleton)
    spool.put(replace(skeleton, success=True))  # the crash hits before the marker goes
    assert spool.recover_interrupted("t") == 0
    assert [r.success for _, r in spool.pending(10)] == [True]
    assert spool.running_ids() == []


OLD_SPOOL_RECORD = {  # exactly what the agent before typed records wrote
    "id": "6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0002", "policy_id": 2, "script_name": "disk",
    "script_version": "1.0.0", "script_hash": "b" * 64, "started_at": "2026-01-01T00:00:00.000Z",
    "trigger": "schedule", "force_token": None, "finished_at": "2026-01-01T00:00:01.000Z",
    "duration_ms": 1000, "exit_code": 0, "success": True, "stdout": "ok\n", "stderr": "",
    "error_message": None,
}
OLD_MARKER = {k: OLD_SPOOL_RECORD[k] for k in (
    "policy_id", "script_name", "script_version", "script_hash", "started_at", "trigger",
    "force_token")} | {"id": "6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0003"}
OLD_EVENT = {"id": "6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0004", "occurred_at": "2026-01-01T00:00:00Z",
             "policy_id": 1, "script_name": "x", "script_version": "1.0.0", "script_hash": "c",
             "reason": "bad_signature", "message": "nope"}


def test_a_spool_written_by_the_old_agent_is_still_reported(tmp_path: Path) -> None:
    """Upgrade: records, markers and events written as plain dicts by the previous
    agent are read back as typed records and reported unchanged."""
    executions, events = tmp_path / "executions", tmp_path / "events"
    executions.mkdir()
    events.mkdir()
    (executions / f"00000000000000000001-{OLD_SPOOL_RECORD['id']}.json").write_text(
        json.dumps(OLD_SPOOL_RECORD, sort_keys=True))
    (executions / f"{OLD_MARKER['id']}.running").write_text(json.dumps(OLD_MARKER))
    (events / f"00000000000000000001-{OLD_EVENT['id']}.json").write_text(json.dumps(OLD_EVENT))
    spool = ExecutionSpool(executions, max_records=10)
    assert spool.recover_interrupted("2026-01-01T00:00:05.000Z") == 1
    server = InMemoryServer()
    server.issued, server.token = ["t"], "t"
    asyncio.run(Reporter(server, spool, EventSpool(events, max_records=10), batch_size=10).flush())
    assert server.executions[OLD_SPOOL_RECORD["id"]] == OLD_SPOOL_RECORD
    interrupted = server.executions[OLD_MARKER["id"]]
    assert interrupted["error_message"] == INTERRUPTED_MESSAGE
    assert interrupted["policy_id"] == 2 and interrupted["success"] is False
    assert server.events[OLD_EVENT["id"]] == OLD_EVENT


def test_state_written_by_the_old_agent_keeps_its_schedule_memory(tmp_path: Path) -> None:
    """Upgrade: schedule memory and counters move from state.json to runs.json."""
    from aami.agent.runbook import RunBookStore

    old = {"version": 1, "target_id": 3, "agent_token": "tok-123456", "last_runs": {"1": 5.0},
           "once_done": {"2": "k"}, "force_done": ["f1"], "scripts_total": 9,
           "scripts_success": 8, "scripts_failed": 1, "last_successful_poll": 7.0}
    (tmp_path / "state.json").write_text(json.dumps(old))
    book = RunBookStore(tmp_path).load(StateStore(tmp_path).load_raw())
    assert (book.last_runs, book.once_done, book.force_done) == ({"1": 5.0}, {"2": "k"}, ["f1"])
    assert (book.scripts_total, book.last_successful_poll) == (9, 7.0)
    StateStore(tmp_path).save(StateStore(tmp_path).load())  # the new agent rewrites state
    again = RunBookStore(tmp_path).load(StateStore(tmp_path).load_raw())
    assert again == book and StateStore(tmp_path).load().agent_token == "tok-123456"
