"""Targets through a real server: memberships, labels, derived agent status."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from aami.server.services.targets import derive_status
from aami.server.timefmt import utcnow
from tests.harness import ServerProcess
from tests.server.helpers import set_heartbeat, unique

NOW = datetime(2026, 1, 1, 12, 0, 0)


@pytest.mark.parametrize(("age", "interval", "expected"), [
    (0, 30, "online"), (60, 30, "online"), (61, 30, "stale"), (300, 30, "stale"),
    (301, 30, "offline"), (-30, 30, "online"), (19, 10, "online"), (21, 10, "stale"),
    (86400, 30, "offline"),
])
def test_derive_status(age: int, interval: int, expected: str) -> None:
    assert derive_status(NOW - timedelta(seconds=age), interval, NOW) == expected


def test_derive_status_never_and_missing_interval() -> None:
    assert derive_status(None, 30, NOW) == "never"
    assert derive_status(NOW - timedelta(seconds=59), None, NOW) == "online"  # default 30s


def test_target_lifecycle(shared_server: ServerProcess) -> None:
    s = shared_server
    g1, g2 = unique("grp"), unique("grp")
    assert s.api("POST", "/api/v1/groups", json_body={"name": g1}).status == 201
    gid2 = s.api("POST", "/api/v1/groups", json_body={"name": g2}).json["id"]
    host = unique("node")
    created = s.api("POST", "/api/v1/targets", role="operator",
                    json_body={"hostname": host, "labels": {"rack": "a1"}, "groups": [g1]})
    assert created.status == 201, created.body
    target = created.json
    assert target["groups"] == [g1] and target["labels"] == {"rack": "a1"}
    assert target["status"] == "never" and target["agent_status"] is None

    dup = s.api("POST", "/api/v1/targets", json_body={"hostname": host})
    assert dup.status == 409 and dup.json["details"]["field"] == "body.hostname"
    missing_group = s.api("POST", "/api/v1/targets",
                          json_body={"hostname": unique("n"), "groups": ["nope-" + g1]})
    # A missing object named in a body is 422 everywhere (docs/api.md, "Errors").
    assert missing_group.status == 422 and missing_group.json["code"] == "UNKNOWN_GROUP"
    assert missing_group.json["details"]["field"] == "body.groups[0]"

    tid = target["id"]
    added = s.api("PUT", f"/api/v1/targets/{tid}/groups/{gid2}", role="operator")
    assert added.status == 200 and added.json["groups"] == sorted([g1, g2])
    assert s.api("PUT", f"/api/v1/targets/{tid}/groups/{gid2}").status == 200  # idempotent
    by_group = s.api("GET", f"/api/v1/targets?group={g2}", role="viewer").json
    assert [t["hostname"] for t in by_group["data"]] == [host]
    assert s.api("DELETE", f"/api/v1/targets/{tid}/groups/{gid2}").status == 204
    assert s.api("DELETE", f"/api/v1/targets/{tid}/groups/{gid2}").status == 404
    assert s.api("GET", f"/api/v1/targets?group={g2}").json["data"] == []

    patched = s.api("PATCH", f"/api/v1/targets/{tid}", role="operator",
                    json_body={"labels": {"rack": "b2"}, "groups": []})
    assert patched.status == 200 and patched.json["groups"] == []
    assert patched.json["labels"] == {"rack": "b2"}
    assert s.api("GET", f"/api/v1/targets?hostname={host[5:]}").json["data"][0]["id"] == tid

    assert s.api("DELETE", f"/api/v1/targets/{tid}", role="operator").status == 403
    assert s.api("DELETE", f"/api/v1/targets/{tid}").status == 204
    assert s.api("GET", f"/api/v1/targets/{tid}").status == 404
    assert s.api("PATCH", f"/api/v1/targets/{tid}", json_body={"labels": {}}).status == 404


def test_status_from_heartbeats(live_server: ServerProcess) -> None:
    s = live_server
    now = utcnow()
    beats = {"online-1": now - timedelta(seconds=5), "stale-1": now - timedelta(seconds=120),
             "offline-1": now - timedelta(hours=2), "never-1": None}
    ids = {}
    for host, when in beats.items():
        ids[host] = s.api("POST", "/api/v1/targets", json_body={"hostname": host}).json["id"]
        if when is not None:
            set_heartbeat(s.database_url, ids[host], when, interval=30)
    # An agent with a slower heartbeat is judged by its own interval.
    ids["slow-1"] = s.api("POST", "/api/v1/targets", json_body={"hostname": "slow-1"}).json["id"]
    set_heartbeat(s.database_url, ids["slow-1"], now - timedelta(seconds=120), interval=300)

    for status, expected in [("online", ["online-1", "slow-1"]), ("stale", ["stale-1"]),
                             ("offline", ["offline-1"]), ("never", ["never-1"])]:
        listed = s.api("GET", f"/api/v1/targets?status={status}", role="viewer").json
        assert [t["hostname"] for t in listed["data"]] == expected, status
        assert all(t["status"] == status for t in listed["data"])
    one = s.api("GET", f"/api/v1/targets/{ids['stale-1']}").json
    assert one["status"] == "stale"
    assert one["agent_status"]["agent_version"] == "1.0.0"
    assert one["agent_status"]["heartbeat_interval_seconds"] == 30
    bad = s.api("GET", "/api/v1/targets?status=sleeping")
    assert bad.status == 400 and bad.json["details"]["field"] == "query.status"
