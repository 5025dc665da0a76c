"""A poll top to bottom through the real agent wiring, against the in-memory Agent API
(see conftest): registration, runs, reports, degraded mode, exactly-once delivery."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aami.agent.daemon import Agent
from aami.agent.records import ExecutionReport
from aami.agent.reporter import Reporter
from aami.agent.spool import EventSpool, ExecutionSpool
from tests.agent.conftest import InMemoryServer, Publisher, make_config

METRICS_SCRIPT = b"""echo '{"metrics": [{"name": "disk_used_percent", "value": 42.5,
  "labels": {"mount": "/"}}]}'
"""


def run_once(agent: Agent) -> int:
    return asyncio.run(agent.run_once())


def test_register_run_report(tmp_path: Path, publisher: Publisher, server: InMemoryServer) -> None:
    schema = {"type": "object", "properties": {"threshold": {"type": "integer"}}}
    server.publish(publisher.sign(METRICS_SCRIPT, name="disk", version="1.0.0",
                                  params_schema=schema), params={"threshold": 80})
    config = make_config(tmp_path, publisher.keys_dir)
    (tmp_path / "textfile").mkdir()
    agent = Agent(config, client=server)
    assert run_once(agent) == 0
    state_file = Path(config.state_dir) / "state.json"
    assert state_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(state_file.read_text())["agent_token"] == server.issued[0]
    [record] = server.executions.values()
    assert record["success"] and record["exit_code"] == 0 and record["trigger"] == "schedule"
    assert record["script_name"] == "disk" and record["script_version"] == "1.0.0"
    assert record["started_at"].endswith("Z") and record["finished_at"].endswith("Z")
    assert record["force_token"] is None and record["duration_ms"] >= 0
    assert server.heartbeats and server.heartbeats[0]["scripts_total"] == 1
    assert (server.heartbeats[0]["polls_total"], server.heartbeats[0]["polls_failed"]) == (1, 0)
    assert "config" in server.calls and agent.trusted.groups == ["gpu", "ml"]
    assert server.heartbeats[0]["system_info"]["cpus"] >= 1
    prom = (tmp_path / "textfile" / "disk.prom").read_text()
    assert 'disk_used_percent{mount="/"} 42.5' in prom
    assert 'disk_used_percent{mount="/"} 42.5' in agent.metrics_page()
    # A second agent process on the same state directory does not register again.
    assert run_once(Agent(config, client=server)) == 0
    assert server.registrations == 1


def test_server_down_keeps_running_last_verified_and_delivers_exactly_once(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    server.publish(publisher.sign(b"echo tick\n"), interval=3600)
    config = make_config(tmp_path, publisher.keys_dir)
    assert run_once(Agent(config, client=server)) == 0
    server.down = True
    for _ in range(3):  # three cycles, each a fresh process reading the state file
        agent = Agent(config, client=server)
        agent.book.last_runs["1"] = 0
        assert run_once(agent) == 1  # poll and report failed...
    assert agent.executions.count() == 3  # ...but the runs happened and were spooled
    assert len(server.executions) == 1
    server.down = False
    assert run_once(Agent(config, client=server)) == 0
    assert len(server.executions) == 4  # the last cycle had nothing due: 1 + 3 spooled
    assert server.duplicates == 0
    assert Agent(config, client=server).executions.count() == 0


def test_server_forgot_the_agent_re_registers_with_bootstrap(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    server.publish(publisher.sign(b"echo hi\n"))
    config = make_config(tmp_path, publisher.keys_dir)
    assert run_once(Agent(config, client=server)) == 0
    server.forget_token = True
    server.changed()
    agent = Agent(config, client=server)
    agent.book.last_runs["1"] = 0
    assert run_once(agent) == 0
    assert server.registrations == 2 and len(server.executions) == 2


def test_forgotten_without_bootstrap_keeps_running_verified_assignments(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer, caplog
) -> None:
    from dataclasses import replace

    server.publish(publisher.sign(f"touch {tmp_path}/ran\n".encode()))
    config = make_config(tmp_path, publisher.keys_dir)
    assert run_once(Agent(config, client=server)) == 0
    (tmp_path / "ran").unlink()
    server.forget_token = True
    agent = Agent(replace(config, bootstrap_token=None), client=server)
    agent.book.last_runs["1"] = 0
    assert run_once(agent) == 1
    assert (tmp_path / "ran").exists()
    assert "no bootstrap token" in caplog.text
    assert agent.executions.count() == 1  # kept for when an operator re-registers


def test_once_policy_runs_once_across_restarts_and_again_on_new_params(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    item = server.publish(publisher.sign(b"echo once\n", params_schema=schema), mode="once",
                          params={"a": 1})
    config = make_config(tmp_path, publisher.keys_dir)
    for _ in range(3):
        run_once(Agent(config, client=server))
    assert len(server.executions) == 1
    item["params"] = {"a": 2}
    server.changed()
    run_once(Agent(config, client=server))
    run_once(Agent(config, client=server))
    assert [r["trigger"] for r in server.executions.values()] == ["once", "once"]


def test_force_token_runs_once_and_is_reported_with_its_token(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    item = server.publish(publisher.sign(b"echo f\n"), mode="once")
    config = make_config(tmp_path, publisher.keys_dir)
    run_once(Agent(config, client=server))
    item["force_token"] = "force-abc"
    server.changed()
    run_once(Agent(config, client=server))
    run_once(Agent(config, client=server))
    forced = [r for r in server.executions.values() if r["trigger"] == "force"]
    assert len(server.executions) == 2 and len(forced) == 1
    assert forced[0]["force_token"] == "force-abc"


def test_secrets_are_masked_in_reported_output(
    tmp_path: Path, publisher: Publisher, server: InMemoryServer
) -> None:
    from dataclasses import replace

    from aami.agent.config import LoggingSettings

    server.publish(publisher.sign(b"echo bootstrap-secret-123 password=hunter2\n"))
    config = replace(make_config(tmp_path, publisher.keys_dir),
                     logging=LoggingSettings(mask_patterns=(r"password=\S+",)))
    run_once(Agent(config, client=server))
    [record] = server.executions.values()
    assert record["stdout"] == "*** ***\n"


def report(record_id: str, **kw: object) -> ExecutionReport:
    fields: dict[str, object] = {
        "policy_id": 1, "script_name": "s", "script_version": "1.0.0", "script_hash": "a" * 64,
        "started_at": "2026-01-01T00:00:00.000Z", **kw}
    return ExecutionReport(id=record_id, **fields)  # type: ignore[arg-type]


def test_reporter_splits_batches_on_413_and_is_idempotent(tmp_path: Path) -> None:
    server = InMemoryServer(max_batch=3)
    server.issued, server.token = ["t"], "t"
    executions = ExecutionSpool(tmp_path / "x", max_records=100)
    for i in range(10):
        executions.put(report(f"id-{i}"))
    reporter = Reporter(server, executions, EventSpool(tmp_path / "e", max_records=10),
                        batch_size=8)
    stats = asyncio.run(reporter.flush())
    assert stats.accepted == 10 and len(server.executions) == 10 and executions.count() == 0
    # A crash after the server acknowledged but before the spool was cleared: re-sent,
    # counted as duplicates, stored once.
    executions.put(report("id-3"))
    stats = asyncio.run(reporter.flush())
    assert stats.duplicates == 1 and len(server.executions) == 10


def test_single_record_too_large_is_shortened(tmp_path: Path) -> None:
    class Picky(InMemoryServer):
        async def post_executions(self, records):  # type: ignore[no-untyped-def]
            from aami.agent.client import PayloadTooLarge

            if any(len(r["stdout"]) > 5000 for r in records):
                raise PayloadTooLarge(413, "PAYLOAD_TOO_LARGE", "too big")
            return await super().post_executions(records)

    server = Picky()
    server.issued, server.token = ["t"], "t"
    executions = ExecutionSpool(tmp_path / "x", max_records=10)
    executions.put(report("big", stdout="x" * 50_000 + "END"))
    asyncio.run(Reporter(server, executions, EventSpool(tmp_path / "e", max_records=10),
                         batch_size=5).flush())
    assert server.executions["big"]["stdout"].endswith("END")
    assert "cut to the last" in server.executions["big"]["stdout"]


def test_record_the_server_rejects_is_set_aside_not_blocking(tmp_path: Path) -> None:
    from aami.agent.client import ServerRefused

    class Strict(InMemoryServer):
        async def post_executions(self, records):  # type: ignore[no-untyped-def]
            if any(r["script_name"] == "bad" for r in records):
                raise ServerRefused(422, "VALIDATION_ERROR", "body.executions[0]: bad")
            return await super().post_executions(records)

    server = Strict()
    server.issued, server.token = ["t"], "t"
    executions = ExecutionSpool(tmp_path / "x", max_records=10)
    for i in range(4):
        executions.put(report(f"id-{i}", **({"script_name": "bad"} if i == 2 else {})))
    stats = asyncio.run(Reporter(server, executions, EventSpool(tmp_path / "e", max_records=10),
                                 batch_size=10).flush())
    assert sorted(server.executions) == ["id-0", "id-1", "id-3"]
    assert stats.dropped == 1 and executions.count() == 0
    assert len(list((tmp_path / "x").glob("*.rejected"))) == 1


@pytest.mark.parametrize(("status", "documented"), [(400, False), (422, False), (429, True),
                                                    (403, True)])
def test_a_refusal_that_is_not_the_servers_word_on_a_record_keeps_it_spooled(
        tmp_path: Path, status: int, documented: bool) -> None:
    """An HTML 400 from a proxy, or a 429/403, says nothing about the records: setting
    them aside would let a broken middlebox empty the spool. The report fails instead
    and everything is sent again next time."""
    from aami.agent.client import ServerRefused

    class Middlebox(InMemoryServer):
        async def post_executions(self, records):  # type: ignore[no-untyped-def]
            raise ServerRefused(status, "HTTP_ERROR", "no", documented=documented)

    executions = ExecutionSpool(tmp_path / "x", max_records=10)
    for i in range(3):
        executions.put(report(f"id-{i}"))
    server = Middlebox()
    server.issued, server.token = ["t"], "t"
    with pytest.raises(ServerRefused):
        asyncio.run(Reporter(server, executions, EventSpool(tmp_path / "e", max_records=10),
                             batch_size=10).flush())
    assert executions.count() == 3 and not list((tmp_path / "x").glob("*.rejected"))


def test_only_the_api_error_body_counts_as_the_servers_refusal() -> None:
    from aami.agent.client import _refusal
    from aami.agent.transport import Response

    html = _refusal(Response(400, {}, b"<html><h1>400 Bad Request</h1></html>"))
    api = _refusal(Response(422, {}, b'{"error": "body.executions[0].id: bad", '
                                     b'"code": "VALIDATION_ERROR", "details": {}}'))
    assert not html.documented and api.documented and api.code == "VALIDATION_ERROR"


def test_concurrent_callers_register_once(tmp_path: Path, publisher: Publisher) -> None:
    """The poll, heartbeat and report loops start together; a single-use bootstrap
    token must be spent once, and every loop must end up with the token."""

    class SingleUse(InMemoryServer):
        async def register(self, bootstrap_token, hostname, agent_version, system_info):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.05)  # a real round trip
            if self.registrations:
                from aami.agent.client import InvalidToken

                raise InvalidToken(401, "INVALID_TOKEN", "bootstrap token used up")
            return await super().register(bootstrap_token, hostname, agent_version, system_info)

    server = SingleUse()
    agent = Agent(make_config(tmp_path, publisher.keys_dir), client=server)

    async def main() -> list[object]:
        return await asyncio.gather(agent.poller.poll(), agent.heartbeat(), agent.report())

    outcome, beat, reported = asyncio.run(main())
    assert server.registrations == 1
    assert outcome.ok and beat and reported  # type: ignore[attr-defined]
