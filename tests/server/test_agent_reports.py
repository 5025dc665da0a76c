"""Executions and security events reported by agents, on both databases."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from aami.server.models import AgentStatus, ScriptExecution, SecurityEvent
from tests.conftest import fresh_database
from tests.harness import ServerProcess
from tests.server.test_agent_fixtures import (
    agent,
    create_policy,
    direct_db,
    execution,
    now_iso,
    publish_script,
    register,
)


def _setup(server: ServerProcess, hostname: str) -> tuple[int, str, int, str]:
    sha = publish_script(server.database_url, "disk-usage", "1.0.0", b"#!/bin/sh\necho hi\n")
    policy_id = create_policy(server.database_url, f"disk-{hostname}", "disk-usage")
    target_id, token = register(server, hostname)
    deadline = time.monotonic() + 30
    while not agent(server, "GET", "/assignments", token).json["assignments"]:
        assert time.monotonic() < deadline, "policy not visible"
        time.sleep(0.1)
    return target_id, token, policy_id, sha


def _status(server: ServerProcess, target_id: int, want: tuple[int, int, int]
            ) -> tuple[int, int, int]:
    """The counts, once they equal `want` or after 30 s (writes are coalesced, ~1 s)."""
    deadline = time.monotonic() + 30
    while True:
        with direct_db(server.database_url):
            row = AgentStatus.get(AgentStatus.target == target_id)
        counts = (row.scripts_total, row.scripts_success, row.scripts_failed)
        if counts == want or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def test_executions_are_idempotent_and_counted(live_server: ServerProcess) -> None:
    target_id, token, policy_id, sha = _setup(live_server, "exec-node")
    batch = [execution(policy_id, sha), execution(policy_id, sha, success=False),
             execution(policy_id, sha, force_token=None, trigger="once")]
    first = agent(live_server, "POST", "/executions", token, json_body={"executions": batch})
    assert first.status == 200, first.body
    assert first.json == {"accepted": 3, "duplicates": 0}
    assert _status(live_server, target_id, (3, 2, 1)) == (3, 2, 1)
    # The agent lost the reply and retries the same batch, plus one new result.
    retry = agent(live_server, "POST", "/executions", token,
                  json_body={"executions": [*batch, execution(policy_id, sha)]})
    assert retry.json == {"accepted": 1, "duplicates": 3}
    assert _status(live_server, target_id, (4, 3, 1)) == (4, 3, 1)
    time.sleep(1.5)  # and they stay there: the duplicates moved nothing
    assert _status(live_server, target_id, (4, 3, 1)) == (4, 3, 1)
    with direct_db(live_server.database_url):
        rows = {r.id: r for r in ScriptExecution.select()}
    assert len(rows) == 4
    stored = rows[batch[1]["id"]]
    assert stored.target_id == target_id and stored.script_policy_id == policy_id
    assert stored.success is False and stored.exit_code == 1 and stored.trigger == "schedule"
    assert rows[batch[2]["id"]].trigger == "once"

    # A policy that is not the caller's (here: one that does not exist) is not linked.
    foreign = execution(999_999, sha)
    assert agent(live_server, "POST", "/executions", token,
                 json_body={"executions": [foreign]}).json["accepted"] == 1
    with direct_db(live_server.database_url):
        assert ScriptExecution.get_by_id(foreign["id"]).script_policy_id is None

    bad_time = agent(live_server, "POST", "/executions", token, json_body={
        "executions": [execution(policy_id, sha, started_at="yesterday")]})
    assert bad_time.status == 400
    assert bad_time.json["details"]["field"] == "body.executions[0].started_at"
    bad_id = agent(live_server, "POST", "/executions", token, json_body={
        "executions": [{**execution(policy_id, sha), "id": "not-a-uuid"}]})
    assert bad_id.status == 400 and bad_id.json["details"]["field"] == "body.executions[0].id"


def test_outputs_are_truncated_keeping_the_tail(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("limits: {max_output: 1KiB, max_execution_batch: 3}\n")
    with fresh_database("sqlite", tmp_path) as url, \
            ServerProcess.start(url, tmp_path, config=str(config)) as server:
        _, token, policy_id, sha = _setup(server, "trunc-node")
        stdout = "".join(f"line {i}\n" for i in range(1000)) + "THE END\n"
        item = execution(policy_id, sha, stdout=stdout, stderr="é" * 5000,
                         error_message="x" * 3000)
        assert agent(server, "POST", "/executions", token,
                     json_body={"executions": [item]}).json["accepted"] == 1
        with direct_db(url):
            row = ScriptExecution.get_by_id(item["id"])
        assert len(row.stdout.encode()) <= 1024 and row.stdout.endswith("line 999\nTHE END\n")
        assert row.stdout.startswith("[aami-server: ") and "bytes truncated]" in row.stdout
        assert len(row.stderr.encode()) <= 1024 and row.stderr.endswith("é" * 100)
        assert len(row.error_message.encode()) <= 1024

        too_many = agent(server, "POST", "/executions", token, json_body={
            "executions": [execution(policy_id, sha) for _ in range(4)]})
        assert too_many.status == 413 and too_many.json["code"] == "PAYLOAD_TOO_LARGE"
        assert too_many.json["details"] == {"field": "body.executions", "max_items": 3}
        events = agent(server, "POST", "/security-events", token, json_body={
            "events": [_event(None) for _ in range(4)]})
        assert events.status == 413
        huge = agent(server, "POST", "/executions", token, json_body={
            "executions": [execution(policy_id, sha, stdout="x" * 2_000_000)]})
        assert huge.status == 413


def _event(policy_id: int | None, **extra: object) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "occurred_at": now_iso(), "policy_id": policy_id,
            "script_name": "disk-usage", "script_version": "1.0.0", "script_hash": "ab" * 32,
            "reason": "bad_signature", "message": "signature does not verify", **extra}


def test_security_events_are_stored_once(live_server: ServerProcess) -> None:
    target_id, token, policy_id, _ = _setup(live_server, "sec-node")
    events = [_event(policy_id), _event(123456, reason="rollback")]
    first = agent(live_server, "POST", "/security-events", token, json_body={"events": events})
    assert first.status == 200 and first.json == {"accepted": 2, "duplicates": 0}
    again = agent(live_server, "POST", "/security-events", token, json_body={"events": events})
    assert again.json == {"accepted": 0, "duplicates": 2}
    with direct_db(live_server.database_url):
        rows = {r.id: r for r in SecurityEvent.select()}
    assert len(rows) == 2
    assert rows[events[0]["id"]].policy_id == policy_id
    assert rows[events[0]["id"]].target_id == target_id
    assert rows[events[1]["id"]].policy_id is None and rows[events[1]["id"]].reason == "rollback"
    missing = agent(live_server, "POST", "/security-events", token,
                    json_body={"events": [{"id": str(uuid.uuid4()), "occurred_at": now_iso()}]})
    assert missing.status == 400 and missing.json["details"]["field"] == "body.events[0].reason"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retention_prunes_old_executions(backend: str, tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("retention: {executions: 10s}\n")
    with fresh_database(backend, tmp_path) as url, \
            ServerProcess.start(url, tmp_path, config=str(config)) as server:
        _, token, policy_id, sha = _setup(server, "old-node")
        old = [execution(policy_id, sha, started_at="2020-01-01T00:00:00Z") for _ in range(5)]
        fresh = execution(policy_id, sha)
        assert agent(server, "POST", "/executions", token,
                     json_body={"executions": [*old, fresh]}).json["accepted"] == 6
        deadline = time.monotonic() + 8
        while True:
            jobs = server.api("GET", "/api/v1/jobs?kind=retention", role="viewer").json["data"]
            if jobs and jobs[0]["status"] == "done":
                break
            assert time.monotonic() < deadline, f"no finished retention job: {jobs}"
            time.sleep(0.2)
        assert jobs[0]["progress_done"] == 5 and jobs[0]["progress_total"] == 5
        assert jobs[0]["detail"]["deleted"] == 5
        with direct_db(url):
            assert [r.id for r in ScriptExecution.select()] == [fresh["id"]]
