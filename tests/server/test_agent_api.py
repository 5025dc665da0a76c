"""The Agent API through real server processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from aami.server.models import AgentStatus
from tests.harness import ServerProcess
from tests.server.test_agent_fixtures import (
    agent,
    create_group,
    create_policy,
    direct_db,
    join_group,
    publish_script,
    register,
    update_policy,
)

SCHEMA = {"type": "object", "properties": {
    "threshold_percent": {"type": "integer", "default": 90},
    "mounts": {"type": "array", "items": {"type": "string"}, "default": ["/"]}}}


def _wait_for(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_heartbeat_is_coalesced_into_agent_status(live_server: ServerProcess) -> None:
    target_id, token = register(live_server, "hb-node")
    body = {"agent_version": "1.2.3", "uptime_seconds": 42, "scripts_total": 3,
            "scripts_success": 2, "scripts_failed": 1, "system_info": {"kernel": "6.1"}}
    for uptime in (40, 41, 42):
        reply = agent(live_server, "POST", "/heartbeat", token,
                      json_body={**body, "uptime_seconds": uptime})
        assert reply.status == 200, reply.body
    assert reply.json == {"poll_interval_seconds": 30, "heartbeat_interval_seconds": 30}
    assert agent(live_server, "GET", "/assignments", token).status == 200

    def status() -> AgentStatus | None:
        with direct_db(live_server.database_url):
            row = AgentStatus.get_or_none(AgentStatus.target == target_id)
        return row if row is not None and row.last_heartbeat and row.last_poll else None

    row = _wait_for(status)
    assert row is not None, "heartbeat not flushed within 5 s"
    assert row.agent_version == "1.2.3" and row.uptime_seconds == 42  # the latest one won
    assert row.system_info["kernel"] == "6.1"
    assert row.system_info["agent_reported"] == {"scripts_total": 3, "scripts_success": 2,
                                                 "scripts_failed": 1}
    assert row.scripts_total == 0  # server-side counts move only with stored executions
    metrics = live_server.api("GET", "/metrics", role=None).body.decode()
    assert "aami_server_http_requests_total" in metrics

    bad = agent(live_server, "POST", "/heartbeat", token,
                json_body={"agent_version": "1", "uptime_seconds": -1})
    assert bad.status == 400 and bad.json["details"]["field"] == "body.uptime_seconds"


def test_config_intervals_come_from_the_highest_priority_group(
        live_server: ServerProcess) -> None:
    create_group(live_server, "low", priority=1, poll_interval_seconds=120,
                 heartbeat_interval_seconds=90)
    high = create_group(live_server, "high", priority=10, poll_interval_seconds=15)
    target_id, token = register(live_server, "cfg-node",
                                live_server.bootstrap_token("--group", "low"))
    config = agent(live_server, "GET", "/config", token)
    assert config.status == 200
    assert config.json == {"target_id": target_id, "hostname": "cfg-node", "groups": ["low"],
                           "poll_interval_seconds": 120, "heartbeat_interval_seconds": 90}
    join_group(live_server.database_url, target_id, "high")
    config = _wait_for(lambda: (c := agent(live_server, "GET", "/config", token)).json[
        "poll_interval_seconds"] == 15 and c)
    assert config, "membership change not visible within 30 s"
    # poll from the high group; heartbeat only set by the low one, so it decides that.
    assert config.json["groups"] == ["high", "low"]
    assert config.json["heartbeat_interval_seconds"] == 90
    live_server.api("PATCH", f"/api/v1/groups/{high}", json_body={"priority": 0})
    assert _wait_for(lambda: agent(live_server, "GET", "/config", token).json[
        "poll_interval_seconds"] == 120)
    hb = agent(live_server, "POST", "/heartbeat", token,
               json_body={"agent_version": "1", "uptime_seconds": 1})
    assert hb.json == {"poll_interval_seconds": 120, "heartbeat_interval_seconds": 90}


def test_assignments_etag_and_script_content(live_server: ServerProcess) -> None:
    url = live_server.database_url
    sha1 = publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho v1\n",
                          params_schema=SCHEMA)
    sha2 = publish_script(url, "disk-usage", "1.2.0", b"#!/bin/sh\necho v2\n",
                          params_schema=SCHEMA)
    other = publish_script(url, "other", "1.0.0", b"#!/bin/sh\necho other\n")
    create_group(live_server, "gpu", priority=5)
    target_id, token = register(live_server, "node-1",
                                live_server.bootstrap_token("--group", "gpu"))
    empty = agent(live_server, "GET", "/assignments", token)
    assert empty.status == 200 and empty.json["assignments"] == []

    glob = create_policy(url, "disk-global", "disk-usage", params={"threshold_percent": 80},
                         interval_seconds=60, run_as="aami-runner")
    grp = create_policy(url, "disk-gpu", "disk-usage", scope="group", group="gpu",
                        params={"mounts": ["/", "/data"]}, interval_seconds=30)
    pinned = _wait_for(lambda: agent(live_server, "GET", "/assignments", token)
                       .json["assignments"])
    assert pinned, "policies not visible within 5 s"
    reply = agent(live_server, "GET", "/assignments", token)
    etag = reply.headers["ETag"]
    assert etag == f'"{reply.json["etag"]}"'
    [item] = reply.json["assignments"]
    assert item["policy_id"] == grp and item["policy_name"] == "disk-gpu"
    assert item["script"]["version"] == "1.2.0" and item["script"]["sha256"] == sha2
    assert item["script"]["envelope"]["payloadType"].startswith("application/")
    # defaults <- global <- group, by top-level key
    assert item["params"] == {"threshold_percent": 80, "mounts": ["/", "/data"]}
    assert item["schedule"] == {"mode": "interval", "interval_seconds": 30}
    assert item["timeout_seconds"] == 30 and item["force_token"] is None

    same = agent(live_server, "GET", "/assignments", token, headers={"If-None-Match": etag})
    assert same.status == 304 and same.body == b"" and same.headers["ETag"] == etag

    script = agent(live_server, "GET", f"/scripts/{sha2}", token)
    assert script.status == 200 and script.body == b"#!/bin/sh\necho v2\n"
    assert script.headers["Content-Type"] == "application/octet-stream"
    for unassigned in (sha1, other, "0" * 64):
        missing = agent(live_server, "GET", f"/scripts/{unassigned}", token)
        assert missing.status == 404 and missing.json["code"] == "NOT_FOUND"
    assert agent(live_server, "GET", "/scripts/not-a-hash", token).status == 400

    update_policy(url, grp, version="1.0.0", schedule_mode="once", interval_seconds=None)
    changed = _wait_for(lambda: (r := agent(live_server, "GET", "/assignments", token,
                                            headers={"If-None-Match": etag})).status == 200
                        and r)
    assert changed, "policy change not visible within 5 s"
    [item] = changed.json["assignments"]
    assert item["script"]["sha256"] == sha1
    assert item["schedule"] == {"mode": "once", "interval_seconds": None}
    assert changed.headers["ETag"] != etag
    assert agent(live_server, "GET", f"/scripts/{sha1}", token).status == 200
    assert agent(live_server, "GET", f"/scripts/{sha2}", token).status == 404

    # Disabled and dangling policies yield nothing; the global one is then in force.
    update_policy(url, grp, enabled=False)
    create_policy(url, "ghost", "no-such-script")
    item = _wait_for(lambda: [a for a in agent(live_server, "GET", "/assignments", token)
                              .json["assignments"] if a["policy_id"] == glob])
    assert item and item[0]["run_as"] == "aami-runner" and item[0]["params"][
        "threshold_percent"] == 80
    names = [a["policy_name"] for a in
             agent(live_server, "GET", "/assignments", token).json["assignments"]]
    assert names == ["disk-global"]
    assert target_id > 0
