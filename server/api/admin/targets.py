"""Admin API: /api/v1/targets (nodes, their labels, groups and agent status)."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.routing import ADMIN, OPERATOR, VIEWER, Call, Route, json_reply
from aami.server.schemas import (
    HOSTNAME,
    ID_PATH,
    NAME,
    NULLABLE_TIMESTAMP,
    OFFSET_QUERY,
    TIMESTAMP,
    limit_query,
    list_of,
    obj,
)
from aami.server.services import targets

LABELS = {
    "type": "object",
    "maxProperties": 64,
    "propertyNames": {"minLength": 1, "maxLength": 63},
    "additionalProperties": {"type": "string", "maxLength": 256},
}
GROUP_NAMES = {"type": "array", "items": NAME, "maxItems": 256}
AGENT_STATUS = {
    "type": ["object", "null"],
    "properties": {
        "agent_version": {"type": "string"},
        "last_heartbeat": NULLABLE_TIMESTAMP,
        "last_poll": NULLABLE_TIMESTAMP,
        "uptime_seconds": {"type": "integer"},
        "scripts_total": {"type": "integer"},
        "scripts_success": {"type": "integer"},
        "scripts_failed": {"type": "integer"},
        "heartbeat_interval_seconds": {"type": "integer"},
        "system_info": {"type": "object"},
    },
}
TARGET = {
    "type": "object",
    "required": ["id", "hostname", "labels", "groups", "status", "agent_status",
                 "created_at", "updated_at"],
    "properties": {
        "id": {"type": "integer"},
        "hostname": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "groups": {"type": "array", "items": {"type": "string"}},
        "status": {"enum": list(targets.STATUSES)},
        "agent_status": AGENT_STATUS,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    },
}
CREATE_BODY = obj(["hostname"], {"hostname": HOSTNAME, "labels": LABELS, "groups": GROUP_NAMES})
UPDATE_BODY = {**obj([], {"labels": LABELS, "groups": GROUP_NAMES}), "minProperties": 1}
MEMBERSHIP_PATH = {**ID_PATH, "group_id": ID_PATH["id"]}


async def list_targets(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        targets.list_targets, hostname=call.query.get("hostname"),
        group=call.query.get("group"), status=call.query.get("status"),
        limit=limit, offset=offset,
    )
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def create_target(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(targets.create, call.body), status=201)


async def get_target(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(targets.read, call.path["id"]))


async def update_target(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(targets.update, call.path["id"], call.body))


async def delete_target(call: Call) -> web.Response:
    await call.app[DATABASE].run(targets.delete, call.path["id"])
    return web.Response(status=204)


async def add_membership(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(
        targets.add_to_group, call.path["id"], call.path["group_id"]))


async def remove_membership(call: Call) -> web.Response:
    await call.app[DATABASE].run(targets.remove_from_group, call.path["id"],
                                 call.path["group_id"])
    return web.Response(status=204)


ROUTES = [
    Route("GET", "/api/v1/targets", list_targets, "List targets with their agent status",
          VIEWER, "targets",
          query={"hostname": {"type": "string", "maxLength": 253},
                 "group": {"type": "string", "maxLength": 128},
                 "status": {"enum": list(targets.STATUSES)},
                 "limit": limit_query(), "offset": OFFSET_QUERY},
          responses={200: list_of(TARGET)}),
    Route("POST", "/api/v1/targets", create_target, "Create a target", OPERATOR, "targets",
          body=CREATE_BODY, responses={201: TARGET}),
    Route("GET", "/api/v1/targets/{id}", get_target, "Read a target", VIEWER, "targets",
          path_params=ID_PATH, responses={200: TARGET}),
    Route("PATCH", "/api/v1/targets/{id}", update_target,
          "Change a target's labels or groups (a groups list replaces the memberships)",
          OPERATOR, "targets", path_params=ID_PATH, body=UPDATE_BODY,
          responses={200: TARGET}),
    Route("DELETE", "/api/v1/targets/{id}", delete_target,
          "Delete a target with its history and agent tokens", ADMIN, "targets",
          path_params=ID_PATH, responses={204: None}),
    Route("PUT", "/api/v1/targets/{id}/groups/{group_id}", add_membership,
          "Add a target to a group (idempotent)", OPERATOR, "targets",
          path_params=MEMBERSHIP_PATH, responses={200: TARGET}),
    Route("DELETE", "/api/v1/targets/{id}/groups/{group_id}", remove_membership,
          "Remove a target from a group", OPERATOR, "targets",
          path_params=MEMBERSHIP_PATH, responses={204: None}),
]
