"""Policies through a real server: canonical form, YAML short forms, every rule."""

from __future__ import annotations

from typing import Any

import pytest

from aami.server.errors import ValidationFailed
from aami.server.services.policies import normalise
from tests.harness import ServerProcess
from tests.server.helpers import Publisher, unique

SCHEMA = {
    "type": "object",
    "required": ["mounts"],
    "properties": {
        "threshold_percent": {"type": "integer", "minimum": 1, "maximum": 100, "default": 80},
        "mounts": {"type": "array", "items": {"type": "string"}},
    },
}


def _body(**changes: Any) -> dict[str, Any]:
    body = {"name": "p", "script": "s", "scope": "global",
            "schedule": {"mode": "interval", "interval_seconds": 60}}
    body.update(changes)
    return body


def test_normalise_short_forms() -> None:
    spec = normalise(_body(schedule={"mode": "interval", "interval": "5m"}, timeout="30s"))
    assert (spec.interval_seconds, spec.timeout_seconds, spec.version) == (300, 30, "latest")
    assert normalise(_body(schedule={"mode": "once"})).interval_seconds is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"scope": "group"}, "body.group"),
    ({"scope": "target"}, "body.target"),
    ({"scope": "global", "group": "g"}, "body.group"),
    ({"scope": "group", "group": "g", "target": "h"}, "body.target"),
    ({"schedule": {"mode": "interval"}}, "body.schedule.interval_seconds"),
    ({"schedule": {"mode": "once", "interval_seconds": 5}}, "body.schedule.interval_seconds"),
    ({"schedule": {"mode": "interval", "interval": "soon"}}, "body.schedule.interval"),
    ({"schedule": {"mode": "interval", "interval": "0s"}}, "body.schedule.interval"),
    ({"schedule": {"mode": "interval", "interval": "1.5s"}}, "body.schedule.interval"),
    ({"schedule": {"mode": "interval", "interval": "1m", "interval_seconds": 60}},
     "body.schedule.interval"),
    ({"timeout": "30s", "timeout_seconds": 30}, "body.timeout"),
])
def test_normalise_rules(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalise(_body(**changes))
    assert caught.value.details["field"] == field


@pytest.fixture(scope="module")
def world(shared_server: ServerProcess) -> dict[str, str]:
    s = shared_server
    pub = Publisher()
    pub.register(s)
    names = {"script": unique("disk"), "group": unique("ml"), "target": unique("node")}
    doc = pub.sign(names["script"], "1.2.0", params_schema=SCHEMA, run_as=["aami-runner"])
    assert s.api("POST", "/api/v1/scripts", json_body=doc).status == 201
    assert s.api("POST", "/api/v1/groups", json_body={"name": names["group"]}).status == 201
    assert s.api("POST", "/api/v1/targets",
                 json_body={"hostname": names["target"]}).status == 201
    return names


def _policy(world: dict[str, str], **changes: Any) -> dict[str, Any]:
    body = {"name": unique("pol"), "script": world["script"], "version": "latest",
            "scope": "group", "group": world["group"],
            "params": {"threshold_percent": 90, "mounts": ["/", "/data"]},
            "schedule": {"mode": "interval", "interval": "60s"}, "timeout": "30s",
            "run_as": "aami-runner", "priority": 100, "enabled": True}
    body.update(changes)
    return body


def test_policy_lifecycle(shared_server: ServerProcess, world: dict[str, str]) -> None:
    s = shared_server
    body = _policy(world)
    created = s.api("POST", "/api/v1/policies", role="operator", json_body=body)
    assert created.status == 201, created.body
    policy = created.json
    assert policy["schedule"] == {"mode": "interval", "interval_seconds": 60}
    assert policy["timeout_seconds"] == 30 and policy["group"] == world["group"]
    assert "timeout" not in policy and policy["target"] is None
    pid = policy["id"]
    assert s.api("POST", "/api/v1/policies", json_body=body).status == 409
    assert s.api("POST", "/api/v1/policies", role="viewer", json_body=body).status == 403

    assert s.api("GET", f"/api/v1/policies/{pid}", role="viewer").json == policy
    listed = s.api("GET", f"/api/v1/policies?script={world['script']}&scope=group").json
    assert pid in [p["id"] for p in listed["data"]]

    canonical = {k: v for k, v in policy.items() if k not in ("id", "created_at", "updated_at")}
    replaced = s.api("PUT", f"/api/v1/policies/{pid}",
                     json_body={**canonical, "scope": "target", "group": None,
                                "target": world["target"], "version": "1.2.0"})
    assert replaced.status == 200, replaced.body
    assert (replaced.json["scope"], replaced.json["target"]) == ("target", world["target"])

    patched = s.api("PATCH", f"/api/v1/policies/{pid}",
                    json_body={"scope": "global", "enabled": False,
                               "schedule": {"mode": "once"}})
    assert patched.status == 200, patched.body
    assert patched.json["target"] is None and patched.json["enabled"] is False
    assert patched.json["schedule"] == {"mode": "once", "interval_seconds": None}
    assert s.api("GET", "/api/v1/policies?enabled=false").json["data"][0]["id"] == pid

    assert s.api("DELETE", f"/api/v1/policies/{pid}", role="operator").status == 204
    assert s.api("GET", f"/api/v1/policies/{pid}").status == 404
    assert s.api("PATCH", f"/api/v1/policies/{pid}", json_body={"enabled": True}).status == 404


@pytest.mark.parametrize(("changes", "status", "code", "field"), [
    ({"group": "no-such-group"}, 422, "UNKNOWN_GROUP", "body.group"),
    ({"scope": "target", "group": None, "target": "no-such-host"}, 422, "UNKNOWN_TARGET",
     "body.target"),
    ({"script": "no-such-script"}, 422, "UNKNOWN_SCRIPT", "body.script"),
    ({"version": "9.9.9"}, 422, "UNKNOWN_VERSION", "body.version"),
    ({"params": {"mounts": ["/"], "threshold_percent": 101}}, 422, "PARAMS_INVALID",
     "body.params.threshold_percent"),
    ({"params": {"threshold_percent": 50}}, 422, "PARAMS_INVALID", "body.params.mounts"),
    ({"params": {"mounts": [1]}}, 422, "PARAMS_INVALID", "body.params.mounts[0]"),
    ({"run_as": "root"}, 422, "RUN_AS_NOT_ALLOWED", "body.run_as"),
    ({"scope": "galaxy"}, 400, "VALIDATION_ERROR", "body.scope"),
    ({"version": "1.2"}, 400, "VALIDATION_ERROR", "body.version"),
    ({"priority": "high"}, 400, "VALIDATION_ERROR", "body.priority"),
    ({"schedule": {"mode": "cron"}}, 400, "VALIDATION_ERROR", "body.schedule.mode"),
    ({"schedule": {"mode": "interval", "every": 5}}, 400, "VALIDATION_ERROR",
     "body.schedule.every"),
    ({"colour": "red"}, 400, "VALIDATION_ERROR", "body.colour"),
])
def test_policy_refusals(shared_server: ServerProcess, world: dict[str, str],
                         changes: dict[str, Any], status: int, code: str, field: str) -> None:
    reply = shared_server.api("POST", "/api/v1/policies", json_body=_policy(world, **changes))
    assert (reply.status, reply.json["code"], reply.json["details"]["field"]) == (
        status, code, field), reply.body


def test_policy_missing_fields(shared_server: ServerProcess, world: dict[str, str]) -> None:
    for missing in ("name", "script", "scope", "schedule"):
        body = {k: v for k, v in _policy(world).items() if k != missing}
        reply = shared_server.api("POST", "/api/v1/policies", json_body=body)
        assert reply.status == 400 and reply.json["details"]["field"] == f"body.{missing}"
