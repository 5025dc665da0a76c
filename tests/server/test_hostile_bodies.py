"""Bodies built to break the parser or the types, on every route that takes a body,
with a token that route accepts: a 400 naming the field, never a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aami.server.app import all_routes
from aami.server.routing import AccessKind, Route
from tests.harness import ServerProcess
from tests.server.helpers import make_agent_token

BODY_ROUTES = [r for r in all_routes() if r.body is not None]
JSON = {"Content-Type": "application/json"}


def _token(s: ServerProcess, route: Route) -> str | None:
    if route.access.kind is AccessKind.AGENT:
        return make_agent_token(s.database_url, "hostile-node")
    if route.access.kind is AccessKind.BOOTSTRAP:
        return s.bootstrap_token()
    if route.access.kind is AccessKind.PUBLIC:
        return None
    return s.token("admin")


def _refused(reply: Any, field: str) -> None:
    assert reply.status == 400, reply.body
    assert reply.json["details"]["field"] == field, reply.json


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_deep_nesting_is_a_400(shared_server: ServerProcess, route: Route) -> None:
    s = shared_server
    token, path = _token(s, route), re.sub(r"{(\w+)}", "1", route.path)
    for body in (b"[" * 200_000 + b"]" * 200_000,       # beyond the decoder's recursion
                 b'{"a":' * 5000 + b"1" + b"}" * 5000,   # parses, breaks recursive checks
                 b"[" * 40 + b"]" * 40):                  # just over the limit
        reply = s.api(route.method, path, data=body, headers=JSON, token=token, role=None)
        _refused(reply, "body")
        assert "nested deeper than 32" in reply.json["error"]


def test_integral_floats_are_not_integers(shared_server: ServerProcess) -> None:
    s = shared_server
    assert s.api("POST", "/api/v1/targets", json_body={"hostname": "float-node"}).status == 201
    target = s.api("GET", "/api/v1/targets?hostname=float-node").json["data"][0]
    reply = s.api("POST", f"/api/v1/targets/{target['id']}/force-run",
                  json_body={"policy_id": 131072.0})
    _refused(reply, "body.policy_id")
    assert s.api("GET", "/api/v1/executions?limit=5.0").status == 400
    agent = make_agent_token(s.database_url, "float-node-2")
    heartbeat = s.api("POST", "/api/v1/agent/heartbeat", token=agent,
                      json_body={"agent_version": "1.0.0", "uptime_seconds": 5.0})
    _refused(heartbeat, "body.uptime_seconds")
