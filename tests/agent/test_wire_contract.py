"""The agent's outbound records against the server's request schemas (one contract test).

`ExecutionReport` and `SecurityEvent` JSON, as the agent really produces it (a real
script run through the agent's wiring, an interrupted run recovered from its marker,
a report shortened to fit, a refusal), must pass the very validator the server applies
to `POST /api/v1/agent/executions` and `/security-events`. The server's schema is
imported here only: the agent itself never imports `aami.server`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aami.agent.cache import ScriptRefused, refusal_event
from aami.agent.daemon import Agent
from aami.agent.executor import utc_now
from aami.agent.records import ExecutionReport, SecurityEvent
from aami.agent.reporter import SHORT_OUTPUT
from aami.agent.wire import Assignment
from aami.server.api.agent import schemas as server_schemas
from aami.server.validation import schema_check
from tests.agent.conftest import InMemoryServer, Publisher, assignment, make_config


def server_error(body: dict[str, Any], schema: dict[str, Any]) -> str | None:
    error = schema_check(schema).first_error(body)
    return None if error is None else f"{list(error.absolute_path)}: {error.message}"


def assert_executions_valid(reports: list[ExecutionReport]) -> None:
    body = {"executions": [r.to_json() for r in reports]}
    assert server_error(body, server_schemas.EXECUTIONS_BODY) is None
    for r in reports:  # the server's validator leaves formats to ingest: check them here
        datetime.fromisoformat(r.started_at)
        if r.finished_at is not None:
            datetime.fromisoformat(r.finished_at)


@pytest.fixture
def real_report(tmp_path: Path, publisher: Publisher, server: InMemoryServer) -> ExecutionReport:
    """A finished run whose output was cut to the output limit, from the real runner."""
    from dataclasses import replace

    from aami.agent.config import ExecutorSettings

    server.publish(publisher.sign(b"head -c 5000 /dev/zero | tr '\\0' x; echo; echo err >&2\n"))
    config = make_config(tmp_path, publisher.keys_dir)
    config = replace(config, executor=ExecutorSettings(output_limit=1000))
    agent = Agent(config, client=server)
    assert asyncio.run(agent.run_once()) == 0
    [raw] = server.executions.values()
    return ExecutionReport.from_json(raw)


def test_normal_interrupted_and_shortened_reports_pass_the_server_schema(
    real_report: ExecutionReport,
) -> None:
    assert real_report.success and "bytes cut" in real_report.stdout  # cut at the limit
    interrupted = ExecutionReport(
        id="6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0009", policy_id=3, script_name="disk",
        script_version="1.2.3", script_hash="a" * 64, started_at=utc_now(), trigger="force",
        force_token="tok-1").interrupted(utc_now())
    long = ExecutionReport.from_json({**real_report.to_json(), "stdout": "y" * 3 * SHORT_OUTPUT})
    shortened = long.shortened(SHORT_OUTPUT)
    assert "cut to the last" in shortened.stdout
    assert_executions_valid([real_report, interrupted, shortened])
    # Round trip through the spool's stored form changes nothing.
    assert ExecutionReport.from_json(real_report.to_json()) == real_report


def test_security_event_passes_the_server_schema(publisher: Publisher) -> None:
    signed = publisher.sign(b"echo hi\n", name="n" * 100)
    claim = Assignment.from_json(assignment(signed, name="n" * 300))
    event = refusal_event(ScriptRefused("name_relabelled", "m" * 5000), claim, utc_now())
    body = {"events": [event.to_json(), SecurityEvent.from_json(event.to_json()).to_json()]}
    assert server_error(body, server_schemas.EVENTS_BODY) is None
    no_assignment = refusal_event(ScriptRefused("bad_signature", "x"), None, utc_now())
    assert server_error({"events": [no_assignment.to_json()]}, server_schemas.EVENTS_BODY) is None


def test_the_contract_check_can_fail(real_report: ExecutionReport) -> None:
    """A record the server would refuse is refused here too (the test is not vacuous)."""
    from dataclasses import replace

    bad = replace(real_report, id="not-a-uuid")
    assert server_error({"executions": [bad.to_json()]}, server_schemas.EXECUTIONS_BODY)
    bad = replace(real_report, trigger="cron")
    assert server_error({"executions": [bad.to_json()]}, server_schemas.EXECUTIONS_BODY)


def test_heartbeat_body_passes_the_server_schema() -> None:
    import time

    from aami.agent.heartbeat import heartbeat_body
    from aami.agent.runbook import RunBook

    body = heartbeat_body(RunBook(scripts_total=3, scripts_success=2, scripts_failed=1),
                          started_monotonic=time.monotonic(), system_info={"cpus": 2},
                          polls_total=10, polls_failed=1)
    assert server_error(body, server_schemas.HEARTBEAT_BODY) is None
    assert server_error({**body, "polls_failed": -1}, server_schemas.HEARTBEAT_BODY)
