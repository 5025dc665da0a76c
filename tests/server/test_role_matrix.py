"""Every admin route x every kind of caller, against the expected status.

The route list comes from `server.app.all_routes()`, so a route added later is in the
matrix without anyone editing this file. Ids in paths point at rows that do not exist
and bodies are empty: an authorised caller gets 400/404 (never 401/403), so the
matrix changes nothing on the server.
"""

from __future__ import annotations

import re

import pytest

from aami.server.app import all_routes
from aami.server.routing import AccessKind, Route
from aami.server.tokens import Role
from tests.harness import ServerProcess
from tests.server.helpers import make_agent_token

ADMIN_ROUTES = [r for r in all_routes() if r.access.kind is AccessKind.ADMIN]
CALLERS = ["none", "garbage", "viewer", "operator", "admin", "agent", "bootstrap"]


def _path(route: Route) -> str:
    values = {"name": "no-such-name", "version": "9.9.9", "hostname": "no-such-host"}

    def fill(match: re.Match[str]) -> str:
        schema = route.path_params.get(match.group(1), {})
        if schema.get("type") == "integer":
            return "999999"
        return values.get(match.group(1), "00000000-0000-0000-0000-000000000000")

    return re.sub(r"{(\w+)}", fill, route.path)


def _expected(route: Route, caller: str) -> str:
    if caller in ("none", "garbage"):
        return "401"
    if caller in ("agent", "bootstrap"):
        return "403"
    assert route.access.role is not None
    return "allowed" if Role(caller).allows(route.access.role) else "403"


@pytest.fixture(scope="module")
def tokens(shared_server: ServerProcess) -> dict[str, str | None]:
    return {
        "none": None,
        "garbage": "aami_adm_this-is-not-a-token",
        "viewer": shared_server.token("viewer"),
        "operator": shared_server.token("operator"),
        "admin": shared_server.token("admin"),
        "agent": make_agent_token(shared_server.database_url, "matrix-node"),
        "bootstrap": shared_server.bootstrap_token("--max-uses", "5"),
    }


def test_matrix_covers_every_admin_route() -> None:
    paths = {(r.method, r.path) for r in ADMIN_ROUTES}
    for expected in [("GET", "/api/v1/targets"), ("POST", "/api/v1/scripts"),
                     ("POST", "/api/v1/tokens"), ("GET", "/api/v1/executions")]:
        assert expected in paths
    assert len(ADMIN_ROUTES) >= 35


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_role_matrix(shared_server: ServerProcess, tokens: dict[str, str | None],
                     route: Route) -> None:
    path = _path(route)
    outcome = {}
    for caller in CALLERS:
        body = {} if route.body is not None else None
        reply = shared_server.api(route.method, path, role=None, token=tokens[caller],
                                  json_body=body)
        assert reply.status < 500, (caller, reply.status, reply.body)
        got = str(reply.status) if reply.status in (401, 403) else "allowed"
        outcome[caller] = got
        if got != "allowed":
            assert reply.json["code"] in ("UNAUTHORIZED", "INVALID_TOKEN", "FORBIDDEN")
    assert outcome == {c: _expected(route, c) for c in CALLERS}
