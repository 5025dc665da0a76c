"""The OpenAPI document lists what each route can answer and the rules it enforces
(server/openapi.py), and the live server answers accordingly."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aami.server.app import all_routes
from aami.server.openapi import build_document
from aami.server.routing import AccessKind
from tests.harness import ServerProcess
from tests.server.helpers import Publisher

DOCUMENT = build_document(all_routes(), version="test")
OPERATIONS = [(path, method, op) for path, item in DOCUMENT["paths"].items()
              for method, op in item.items()]


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_every_route_lists_its_statuses(path: str, method: str, op: dict[str, Any]) -> None:
    route = next(r for r in all_routes() if r.path == path and r.method.lower() == method)
    listed = set(op["responses"])
    if route.body is not None:
        assert {"400", "413"} <= listed
    if route.path_params:
        assert {"400", "404"} <= listed
    if route.access.kind is not AccessKind.PUBLIC:
        assert {"401", "403", "429"} <= listed
        assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    if "cursor" in route.query:
        assert "cursor" in op["responses"]["400"]["description"]


def _body(path: str, method: str) -> dict[str, Any]:
    schema: dict[str, Any] = DOCUMENT["paths"][path][method]["requestBody"]["content"][
        "application/json"]["schema"]
    return schema


def test_conditional_rules_are_in_the_document() -> None:
    policy = _body("/api/v1/policies", "post")
    rules = str(policy["allOf"])
    assert "'const': 'group'" in rules and "'const': 'target'" in rules
    bootstrap = _body("/api/v1/bootstrap-tokens", "post")
    assert bootstrap["not"]["required"] == ["expires_in_seconds", "expires_at"]
    envelope = _body("/api/v1/scripts", "post")["properties"]["envelope"]
    assert envelope["required"] == ["payloadType", "payload", "signatures"]
    assert envelope["properties"]["signatures"]["items"]["required"] == ["sig"]  # keyid: no
    # NUL refused in operators' strings and free-form values, not in agents' reports.
    group = _body("/api/v1/groups", "post")["properties"]["description"]
    assert re.compile(group["pattern"]).search("a\x00b") is None
    params = _body("/api/v1/policies", "post")["properties"]["params"]
    assert params["additionalProperties"] == {"$ref": "#/components/schemas/JsonWithoutNul"}
    heartbeat = _body("/api/v1/agent/heartbeat", "post")
    assert "pattern" not in heartbeat["properties"]["agent_version"]


def test_a_missing_object_named_in_a_body_is_422(shared_server: ServerProcess) -> None:
    s = shared_server
    target = s.api("POST", "/api/v1/targets", json_body={"hostname": "truth-node"}).json
    for method, path, body in [
        ("PATCH", f"/api/v1/targets/{target['id']}", {"groups": ["no-such-group"]}),
        ("POST", "/api/v1/targets", {"hostname": "truth-2", "groups": ["no-such-group"]}),
        ("POST", f"/api/v1/targets/{target['id']}/force-run", {"policy_id": 424242}),
        ("POST", "/api/v1/bootstrap-tokens", {"group": "no-such-group"}),
        ("POST", "/api/v1/policies", {"name": "truth-p", "script": "no-such-script",
                                      "scope": "global", "schedule": {"mode": "once"}}),
    ]:
        reply = s.api(method, path, json_body=body)
        assert reply.status == 422, (method, path, reply.body)
        assert reply.json["code"].startswith("UNKNOWN_"), reply.json
        assert "422" in DOCUMENT["paths"][re.sub(r"/\d+", "/{id}", path)][method.lower()][
            "responses"]


def test_conditional_rules_refuse_with_the_field(shared_server: ServerProcess) -> None:
    s = shared_server
    base = {"name": "truth-rule", "script": "x", "scope": "group",
            "schedule": {"mode": "interval", "interval": "60s"}}
    for body, field in [({**base}, "body.group"),
                        ({**base, "group": "g", "target": "t"}, "body.target"),
                        ({**base, "group": "g", "schedule": {"mode": "interval"}},
                         "body.schedule"),
                        ({**base, "group": "g", "timeout": "5m", "timeout_seconds": 5},
                         "body.timeout")]:
        reply = s.api("POST", "/api/v1/policies", json_body=body)
        assert reply.status == 400 and reply.json["details"]["field"] == field, reply.body


def test_a_patch_that_leaves_the_policy_invalid_is_422(shared_server: ServerProcess) -> None:
    """The change is schema-valid; the stored policy it would leave is not (a group on a
    global policy): that depends on stored state, so 422, not 400."""
    s = shared_server
    pub = Publisher()
    pub.register(s)
    assert s.api("POST", "/api/v1/scripts", json_body=pub.sign("truth-s", "1.0.0")).status == 201
    assert s.api("POST", "/api/v1/groups", json_body={"name": "truth-g"}).status == 201
    policy = s.api("POST", "/api/v1/policies", json_body={
        "name": "truth-global", "script": "truth-s", "scope": "global",
        "schedule": {"mode": "once"}}).json
    reply = s.api("PATCH", f"/api/v1/policies/{policy['id']}", json_body={"group": "truth-g"})
    assert reply.status == 422 and reply.json["code"] == "POLICY_INVALID", reply.body
    assert reply.json["details"]["field"] == "body.group"


def test_a_request_line_the_parser_cannot_read_is_the_documented_plain_400(
    shared_server: ServerProcess,
) -> None:
    """Found by schemathesis (a fuzzed query string over 8 KiB): aiohttp's parser
    answers before any route, in text/plain; the document says so, and nothing is
    a 500 or a hang."""
    import http.client

    long_query = "x" * 9000
    conn = http.client.HTTPConnection("127.0.0.1", shared_server.port, timeout=30)
    try:
        conn.request("GET", f"/api/v1/scripts/probe/versions?offset={long_query}",
                     headers={"Authorization": f"Bearer {shared_server.token('viewer')}"})
        reply = conn.getresponse()
        body = reply.read().decode()
    finally:
        conn.close()
    assert reply.status == 400 and reply.getheader("Content-Type", "").startswith("text/plain")
    assert "8190 bytes" in body
    documented = DOCUMENT["paths"]["/api/v1/scripts/{name}/versions"]["get"]["responses"]["400"]
    assert set(documented["content"]) == {"application/json", "text/plain"}
