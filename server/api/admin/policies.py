"""Admin API: /api/v1/policies (operators edit, viewers read)."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.routing import OPERATOR, VIEWER, Call, Route, json_reply
from aami.server.schemas import (
    ID_PATH,
    MODES,
    NAME,
    OFFSET_QUERY,
    POLICY_CREATE_BODY,
    POLICY_PATCH_BODY,
    SCOPES,
    TIMESTAMP,
    limit_query,
    list_of,
)
from aami.server.services import policies

POLICY = {
    "type": "object",
    "required": ["id", "name", "script", "version", "scope", "group", "target", "params",
                 "schedule", "timeout_seconds", "run_as", "priority", "enabled",
                 "created_at", "updated_at"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "script": {"type": "string"},
        "version": {"type": "string"},
        "scope": {"enum": SCOPES},
        "group": {"type": ["string", "null"]},
        "target": {"type": ["string", "null"]},
        "params": {"type": "object"},
        "schedule": {"type": "object", "required": ["mode", "interval_seconds"],
                     "properties": {"mode": {"enum": MODES},
                                    "interval_seconds": {"type": ["integer", "null"]}}},
        "timeout_seconds": {"type": ["integer", "null"]},
        "rollout": {"type": ["object", "null"]},
        "run_as": {"type": ["string", "null"]},
        "priority": {"type": "integer"},
        "enabled": {"type": "boolean"},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    },
}


async def list_policies(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        policies.list_policies, name=call.query.get("name"), scope=call.query.get("scope"),
        script=call.query.get("script"), enabled=call.query.get("enabled"),
        limit=limit, offset=offset)
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def create_policy(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(policies.create, call.body), status=201)


async def get_policy(call: Call) -> web.Response:
    row = await call.app[DATABASE].run(policies.get, call.path["id"])
    return json_reply(await call.app[DATABASE].run(policies.to_wire, row))


async def replace_policy(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(policies.replace, call.path["id"],
                                                   call.body))


async def patch_policy(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(policies.patch, call.path["id"], call.body))


async def delete_policy(call: Call) -> web.Response:
    await call.app[DATABASE].run(policies.delete, call.path["id"])
    return web.Response(status=204)


ROUTES = [
    Route("GET", "/api/v1/policies", list_policies, "List policies", VIEWER, "policies",
          query={"name": {"type": "string", "maxLength": 128}, "scope": {"enum": SCOPES},
                 "script": NAME, "enabled": {"type": "boolean"},
                 "limit": limit_query(), "offset": OFFSET_QUERY},
          responses={200: list_of(POLICY)}),
    Route("POST", "/api/v1/policies", create_policy, "Create a policy", OPERATOR, "policies",
          body=POLICY_CREATE_BODY, responses={201: POLICY}),
    Route("GET", "/api/v1/policies/{id}", get_policy, "Read a policy", VIEWER, "policies",
          path_params=ID_PATH, responses={200: POLICY}),
    Route("PUT", "/api/v1/policies/{id}", replace_policy, "Replace a policy", OPERATOR,
          "policies", path_params=ID_PATH, body=POLICY_CREATE_BODY, responses={200: POLICY}),
    Route("PATCH", "/api/v1/policies/{id}", patch_policy,
          "Change some fields of a policy (the result is validated as a whole)", OPERATOR,
          "policies", path_params=ID_PATH, body=POLICY_PATCH_BODY, responses={200: POLICY}),
    Route("DELETE", "/api/v1/policies/{id}", delete_policy, "Delete a policy", OPERATOR,
          "policies", path_params=ID_PATH, responses={204: None}),
]
