"""Admin API: /api/v1/publisher-keys (admin registers and revokes; viewers read)."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.routing import ADMIN, VIEWER, Call, Route, json_reply
from aami.server.schemas import (
    ID_PATH,
    NAME,
    NULLABLE_TIMESTAMP,
    OFFSET_QUERY,
    TIMESTAMP,
    limit_query,
    list_of,
    obj,
)
from aami.server.services import publisher_keys

KEY = {
    "type": "object",
    "required": ["id", "name", "key_id", "public_key", "revoked", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "key_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "public_key": {"type": "string"},
        "revoked": {"type": "boolean"},
        "revoked_at": NULLABLE_TIMESTAMP,
        "created_at": TIMESTAMP,
    },
}
CREATE_BODY = obj(["name", "public_key"], {
    "name": NAME,
    "public_key": {"type": "string", "minLength": 1, "maxLength": 4096},
})


async def create_key(call: Call) -> web.Response:
    row = await call.app[DATABASE].run(publisher_keys.create, call.body["name"],
                                       call.body["public_key"])
    return json_reply(row, status=201)


async def list_keys(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        publisher_keys.list_keys, revoked=call.query.get("revoked"), limit=limit, offset=offset)
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def get_key(call: Call) -> web.Response:
    row = await call.app[DATABASE].run(publisher_keys.get, call.path["id"])
    return json_reply(publisher_keys.to_wire(row))


async def revoke_key(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(publisher_keys.revoke, call.path["id"]))


ROUTES = [
    Route("GET", "/api/v1/publisher-keys", list_keys, "List publisher keys", VIEWER,
          "publisher-keys",
          query={"revoked": {"type": "boolean"}, "limit": limit_query(),
                 "offset": OFFSET_QUERY},
          responses={200: list_of(KEY)}),
    Route("POST", "/api/v1/publisher-keys", create_key,
          "Register a publisher's Ed25519 public key (PEM); the key id is derived from it",
          ADMIN, "publisher-keys", body=CREATE_BODY, responses={201: KEY}),
    Route("GET", "/api/v1/publisher-keys/{id}", get_key, "Read a publisher key", VIEWER,
          "publisher-keys", path_params=ID_PATH, responses={200: KEY}),
    Route("POST", "/api/v1/publisher-keys/{id}/revoke", revoke_key,
          "Revoke a publisher key: uploads it signed are refused from now on", ADMIN,
          "publisher-keys", path_params=ID_PATH, responses={200: KEY}),
]
