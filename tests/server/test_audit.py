"""The audit log: real server processes record every change once (API, web UI,
agent registration, the server's CLI); `aami-server audit verify` proves the chain,
and detects an entry edited or deleted straight in the database; pruning keeps the
chain verifiable; two processes appending at once keep one chain."""

from __future__ import annotations

import itertools
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aami.server.models import AuditEntry
from tests.conftest import fresh_database
from tests.harness import ServerProcess, run_cli
from tests.server.test_agent_fixtures import direct_db, register
from tests.web.helpers import UiClient


def _verify(server: ServerProcess) -> tuple[int, str]:
    out = run_cli("aami-server", "audit", "verify", "--database", server.database_url,
                  check=False)
    return out.returncode, out.stdout.strip()


def _entries(server: ServerProcess, query: str = "") -> list[dict[str, Any]]:
    reply = server.api("GET", f"/api/v1/audit{query}")
    assert reply.status == 200, reply.body
    return list(reply.json["data"])


def test_changes_are_recorded_and_tampering_is_detected(live_server: ServerProcess) -> None:
    server = live_server
    server.token("operator")  # through the CLI: recorded as the local user
    created = server.api("POST", "/api/v1/groups", json_body={"name": "rack-1"},
                         headers={"X-Request-Id": "req-42"})
    assert created.status == 201 and created.headers["X-Request-Id"] == "req-42"
    group_id = created.json["id"]
    assert server.api("PATCH", f"/api/v1/groups/{group_id}",
                      json_body={"priority": 5}).status == 200
    assert server.api("POST", "/api/v1/groups", json_body={"name": "rack-1"}).status == 409
    assert server.api("GET", "/api/v1/groups").status == 200  # reads are not recorded
    register(server, "audited-node")
    ui = UiClient(server.url)
    ui.login(server.token("admin"))
    page = ui.post("/ui/groups", {"csrf_token": ui.csrf(), "name": "from-ui",
                                  "description": "", "priority": "0"})
    assert page.status == 303, page.text[:300]

    entries = list(reversed(_entries(server)))
    actions = [e["action"] for e in entries]
    assert actions == ["token.create", "token.create", "group.create", "group.update",
                       "bootstrap-token.create", "agent.register", "group.create"], actions
    cli, api_create, api_update = entries[0], entries[2], entries[3]
    assert cli["actor"]["kind"] == "cli" and cli["summary"]["role"] in ("admin", "operator")
    assert api_create["actor"] == {"kind": "token", "name": "test-admin", "role": "admin"}
    assert api_create["object_type"] == "group" and api_create["object_id"] == str(group_id)
    assert api_create["request_id"] == "req-42" and api_create["source"] == "127.0.0.1"
    assert api_create["summary"]["request"] == {"name": "rack-1"}
    assert api_update["summary"]["request"] == {"priority": 5}
    assert api_update["summary"]["before"] == {"priority": 0}  # before/after of what changed
    assert entries[5]["actor"]["kind"] == "bootstrap" and entries[5]["object_type"] == "target"
    ui_entry = entries[-1]
    assert ui_entry["actor"]["kind"] == "session" and ui_entry["actor"]["role"] == "admin"
    assert ui_entry["summary"]["request"]["csrf_token"] == "***"
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["hash"]

    # Filters and paging; admin only.
    assert [e["action"] for e in _entries(server, "?action=group.update")] == ["group.update"]
    assert len(_entries(server, "?object_type=group")) == 3
    assert len(_entries(server, "?actor=test-admin")) == 3  # API and UI, same token
    first = server.api("GET", "/api/v1/audit?limit=3").json
    rest = server.api("GET", f"/api/v1/audit?limit=50&cursor="
                             f"{first['pagination']['next_cursor']}").json
    assert len(first["data"]) == 3 and len(rest["data"]) == len(entries) - 3
    assert server.api("GET", "/api/v1/audit", role="operator").status == 403
    assert server.api("GET", "/api/v1/audit?since=yesterday").status == 400
    assert "group.update" in ui.get("/ui/audit?action=group.update").text

    code, out = _verify(server)
    assert code == 0 and f"{len(entries)} entries" in out, out

    # Edit one entry in the database: verify names it.
    victim = entries[3]["id"]
    with direct_db(server.database_url):
        AuditEntry.update(summary={"request": {"priority": 0}}).where(
            AuditEntry.id == victim).execute()
    code, out = _verify(server)
    assert code == 1 and f"entry {victim}:" in out and "edited" in out, out
    # Delete it instead (the chain after it no longer links).
    with direct_db(server.database_url):
        AuditEntry.delete().where(AuditEntry.id == victim).execute()
    code, out = _verify(server)
    assert code == 1 and f"entry {entries[4]['id']}:" in out and "removed" in out, out


def test_prune_keeps_the_chain_verifiable(live_server: ServerProcess) -> None:
    server = live_server
    for name in ("a", "b", "c"):
        assert server.api("POST", "/api/v1/groups", json_body={"name": name}).status == 201
    time.sleep(1.2)
    assert server.api("POST", "/api/v1/groups", json_body={"name": "d"}).status == 201
    out = run_cli("aami-server", "audit", "prune", "--older-than", "1s", "--database",
                  server.database_url)
    assert "dropped 4 entries" in out.stdout  # the CLI's token and three groups
    actions = [e["action"] for e in _entries(server)]
    assert actions == ["audit.checkpoint", "group.create"], actions
    assert _verify(server)[0] == 0
    # Dropping the oldest kept entry by hand, without a checkpoint, is detected.
    with direct_db(server.database_url):
        oldest = AuditEntry.select().order_by(AuditEntry.id).first()
        oldest.delete_instance()
    code, out = _verify(server)
    assert code == 1 and "without a checkpoint" in out, out
    bad = run_cli("aami-server", "audit", "prune", "--older-than", "soon", "--database",
                  server.database_url, check=False)
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_a_recorded_head_pins_the_chain(live_server: ServerProcess, tmp_path: Path) -> None:
    """What the chain alone cannot show (the newest entries removed) is caught against
    a head recorded outside the database: the one the server logs."""
    server = live_server
    for name in ("a", "b"):
        assert server.api("POST", "/api/v1/groups", json_body={"name": name}).status == 201
    # A server started on this database logs the head it found.
    with ServerProcess.start(server.database_url, tmp_path) as second:
        line = next(line for line in second.log().splitlines() if "audit head: " in line)
    code, out = _verify(server)
    head = out.rsplit(" ", 1)[-1]
    assert code == 0 and f"hash {head} " in line, (out, line)

    def verify_pinned(pinned: str) -> tuple[int, str]:
        done = run_cli("aami-server", "audit", "verify", "--expect-head", pinned,
                       "--database", server.database_url, check=False)
        return done.returncode, done.stdout.strip() + done.stderr.strip()

    assert server.api("POST", "/api/v1/groups", json_body={"name": "c"}).status == 201
    assert verify_pinned(head)[0] == 0  # later entries leave a recorded head in place
    # Remove the two newest entries: the shortened chain still links...
    with direct_db(server.database_url):
        newest = [e.id for e in AuditEntry.select().order_by(AuditEntry.id.desc()).limit(2)]
        AuditEntry.delete().where(AuditEntry.id.in_(newest)).execute()
    assert _verify(server)[0] == 0
    # ...but no longer holds the recorded head.
    code, out = verify_pinned(head)
    assert code == 1 and f"no entry has the pinned hash {head}" in out, out
    code, out = verify_pinned("not-a-hash")
    assert code == 2 and out == ("aami-server: error: --expect-head: expected the 64 hex "
                                 "digits of an entry's hash"), out


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_processes_append_one_chain(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path) as url, ServerProcess.start(
            url, tmp_path, extra_args=("--processes", "2")) as server:
        server.token("admin")
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: server.api(
                "POST", "/api/v1/groups", json_body={"name": f"g-{i}"}), range(60)))
        assert all(r.status == 201 for r in replies)
        code, out = _verify(server)
        assert code == 0 and "61 entries" in out, out


def test_verify_only_reads_and_prune_refuses_zero(live_server: ServerProcess,
                                                 tmp_path: Path) -> None:
    """A check that passes on the wrong database would stay green forever in cron."""
    missing = tmp_path / "typo.db"
    done = run_cli("aami-server", "audit", "verify", "--database", f"sqlite:///{missing}",
                   check=False)
    assert done.returncode == 2 and not missing.exists()
    assert done.stderr.strip().splitlines()[-1] == (
        f"aami-server: error: database sqlite:///{missing}: no such file")
    empty = tmp_path / "empty.db"
    empty.touch()
    done = run_cli("aami-server", "audit", "verify", "--database", f"sqlite:///{empty}",
                   check=False)
    assert done.returncode == 2 and "never migrated" in done.stderr
    with sqlite3.connect(empty) as db:  # not turned into one
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    assert _verify(live_server)[0] == 0  # a real, migrated database passes
    zero = run_cli("aami-server", "audit", "prune", "--older-than", "0", "--database",
                   live_server.database_url, check=False)
    assert zero.returncode == 2 and "--older-than: must be more than 0" in zero.stderr
    usage = run_cli("aami-server", "audit", check=False)
    assert usage.returncode == 2
    assert usage.stderr.strip() == "aami-server: error: the following arguments are " \
                                   "required: COMMAND"
