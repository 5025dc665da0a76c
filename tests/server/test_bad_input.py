"""Bad input on every admin route with a body: each case gets the documented error
shape naming the field, never a 500. The route list comes from the application."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aami.server.app import all_routes
from aami.server.routing import AccessKind, Route
from tests.harness import ServerProcess

BODY_ROUTES = [r for r in all_routes()
               if r.access.kind is AccessKind.ADMIN and r.body is not None]


def _path(route: Route) -> str:
    return re.sub(r"{(\w+)}", "999999", route.path)


def _assert_error(reply: Any, status: int, field: str | None = None) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json
    assert set(body) == {"error", "code", "details"} and body["error"]
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", body["code"])
    if field is not None:
        assert body["details"]["field"] == field, body


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_body_errors(shared_server: ServerProcess, route: Route) -> None:
    s, path = shared_server, _path(route)
    json_headers = {"Content-Type": "application/json"}
    _assert_error(s.api(route.method, path, data=b"{nope", headers=json_headers), 400, "body")
    _assert_error(s.api(route.method, path, data=b"", headers=json_headers), 400, "body")
    _assert_error(s.api(route.method, path, data=b"\xff\xfe", headers=json_headers), 400,
                  "body")
    _assert_error(s.api(route.method, path, json_body=[1, 2]), 400, "body")
    _assert_error(s.api(route.method, path, json_body={"surely_unknown_field": 1}), 400)
    _assert_error(s.api(route.method, path, data=b"x" * (2 * 1024 * 1024),
                        headers=json_headers), 413)


def test_missing_and_wrong_fields(shared_server: ServerProcess) -> None:
    s = shared_server
    _assert_error(s.api("POST", "/api/v1/targets", json_body={}), 400, "body.hostname")
    _assert_error(s.api("POST", "/api/v1/targets", json_body={"hostname": "a b"}), 400,
                  "body.hostname")
    _assert_error(s.api("POST", "/api/v1/targets", json_body={"hostname": "h", "labels": []}),
                  400, "body.labels")
    _assert_error(s.api("POST", "/api/v1/targets",
                        json_body={"hostname": "h", "groups": ["ok", 5]}), 400, "body.groups[1]")
    _assert_error(s.api("POST", "/api/v1/publisher-keys", json_body={"name": "k"}), 400,
                  "body.public_key")
    _assert_error(s.api("PATCH", "/api/v1/targets/1", json_body={}), 400, "body")
    _assert_error(s.api("POST", "/api/v1/tokens", json_body={"name": "t", "role": 1}), 400,
                  "body.role")


@pytest.mark.parametrize("path", [
    "/api/v1/targets/999999", "/api/v1/policies/999999", "/api/v1/publisher-keys/999999",
    "/api/v1/scripts/nothing-here/versions", "/api/v1/scripts/nothing-here/versions/1.0.0",
    "/api/v1/executions/00000000-0000-0000-0000-000000000000",
])
def test_unknown_ids(shared_server: ServerProcess, path: str) -> None:
    _assert_error(shared_server.api("GET", path, role="viewer"), 404)


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/targets/abc", "path.id"), ("/api/v1/targets/0", "path.id"),
    ("/api/v1/policies/99999999999", "path.id"),
    ("/api/v1/scripts/x/versions/1.0", "path.version"),
    ("/api/v1/scripts/..%2Fetc/versions", "path.name"),
    ("/api/v1/targets?limit=100000", "query.limit"),
    ("/api/v1/targets?offset=-1", "query.offset"),
    ("/api/v1/policies?enabled=yes", "query.enabled"),
    ("/api/v1/policies?scope=world", "query.scope"),
])
def test_bad_path_and_query(shared_server: ServerProcess, path: str, field: str) -> None:
    _assert_error(shared_server.api("GET", path, role="viewer"), 400, field)


def test_bad_tokens(shared_server: ServerProcess) -> None:
    s = shared_server
    for header in ["Bearer", "Basic abc", "Bearer aami_adm_nope", "Bearer something-else"]:
        reply = s.api("GET", "/api/v1/targets", role=None, headers={"Authorization": header})
        _assert_error(reply, 401)
    _assert_error(s.api("DELETE", "/api/v1/targets", role="admin"), 405)
