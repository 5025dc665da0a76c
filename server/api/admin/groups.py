"""Admin API: /api/v1/groups."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.routing import ADMIN, OPERATOR, VIEWER, Call, Route, json_reply
from aami.server.schemas import (
    GROUP_CREATE_BODY,
    GROUP_FIELDS,
    GROUP_UPDATE_BODY,
    ID_PATH,
    OFFSET_QUERY,
    limit_query,
    list_of,
)
from aami.server.services import groups

GROUP = {
    "type": "object",
    "required": ["id", "name", "priority", "created_at"],
    "properties": {"id": {"type": "integer"}, **GROUP_FIELDS},
}


async def list_groups(call: Call) -> web.Response:
    limit = call.query.get("limit", 50)
    offset = call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        groups.list_groups, name=call.query.get("name"), limit=limit, offset=offset
    )
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def create_group(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(groups.create, call.body), status=201)


async def get_group(call: Call) -> web.Response:
    group = await call.app[DATABASE].run(groups.get, call.path["id"])
    return json_reply(groups.to_wire(group))


async def update_group(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(groups.update, call.path["id"], call.body))


async def delete_group(call: Call) -> web.Response:
    await call.app[DATABASE].run(groups.delete, call.path["id"])
    return web.Response(status=204)


ROUTES = [
    Route("GET", "/api/v1/groups", list_groups, "List groups", VIEWER, "groups",
          query={"name": {"type": "string", "maxLength": 128}, "limit": limit_query(),
                 "offset": OFFSET_QUERY},
          responses={200: list_of(GROUP)}),
    Route("POST", "/api/v1/groups", create_group, "Create a group", OPERATOR, "groups",
          body=GROUP_CREATE_BODY, responses={201: GROUP}),
    Route("GET", "/api/v1/groups/{id}", get_group, "Read a group", VIEWER, "groups",
          path_params=ID_PATH, responses={200: GROUP}),
    Route("PATCH", "/api/v1/groups/{id}", update_group, "Change a group", OPERATOR, "groups",
          path_params=ID_PATH, body=GROUP_UPDATE_BODY, responses={200: GROUP}),
    Route("DELETE", "/api/v1/groups/{id}", delete_group, "Delete a group", ADMIN, "groups",
          path_params=ID_PATH, responses={204: None}),
]
