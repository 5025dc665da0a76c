"""Admin API: /api/v1/tokens and /api/v1/bootstrap-tokens (admin role only).

A secret appears once, in the 201 answer to its creation; listings show only the
short prefix. Revoking an admin token also drops it from this process's auth cache
at once; other processes forget it within a watcher period, through the
credentials revision (see `server.auth`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from aami.server.appkeys import AUTHENTICATOR, DATABASE
from aami.server.errors import Unprocessable
from aami.server.routing import ADMIN, Call, Route, json_reply
from aami.server.schemas import (
    HOSTNAME,
    ID_PATH,
    NAME,
    NULLABLE_TIMESTAMP,
    OFFSET_QUERY,
    TIME_IN,
    TIMESTAMP,
    at_most_one,
    limit_query,
    list_of,
    nullable,
    obj,
)
from aami.server.services import tokens
from aami.server.timefmt import parse_iso, utcnow
from aami.server.tokens import Role

DEFAULT_BOOTSTRAP_LIFETIME = timedelta(days=30)  # as `aami-server bootstrap-token create`

API_TOKEN = {
    "type": "object",
    "required": ["id", "name", "role", "prefix", "revoked", "created_at"],
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "role": {"enum": [r.value for r in Role]}, "prefix": {"type": "string"},
        "revoked": {"type": "boolean"}, "created_at": TIMESTAMP,
        "last_used_at": NULLABLE_TIMESTAMP,
    },
}
BOOTSTRAP_TOKEN = {
    "type": "object",
    "required": ["id", "name", "prefix", "max_uses", "uses", "expires_at", "group",
                 "allow_rebind", "hostname", "revoked", "created_at"],
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "prefix": {"type": "string"},
        "max_uses": {"type": "integer"}, "uses": {"type": "integer"},
        "expires_at": NULLABLE_TIMESTAMP, "group": {"type": ["string", "null"]},
        "allow_rebind": {"type": "boolean"}, "hostname": nullable(HOSTNAME),
        "revoked": {"type": "boolean"}, "created_at": TIMESTAMP,
    },
}


def _with_secret(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "required": [*schema["required"], "token"],
            "properties": {**schema["properties"], "token": {"type": "string"}}}


API_TOKEN_CREATE = obj(["name", "role"], {"name": NAME, "role": {"enum": [r.value for r in Role]}})
BOOTSTRAP_CREATE = {**obj([], {
    "name": {"type": "string", "maxLength": 128},
    "max_uses": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "expires_in_seconds": {"type": "integer", "minimum": 1, "maximum": 10 * 31_536_000},
    "expires_at": TIME_IN,
    "group": nullable(NAME),
    "allow_rebind": {"type": "boolean"},
    # Only this node may register with it (and claim its pre-created target).
    "hostname": nullable(HOSTNAME),
    # A lifetime or an end, not both (neither: 30 days).
}), **at_most_one("expires_in_seconds", "expires_at")}
PAGING = {"limit": limit_query(), "offset": OFFSET_QUERY}


def _page(rows: list[dict[str, Any]], total: int, call: Call) -> web.Response:
    return json_reply({"data": rows, "pagination": {
        "limit": call.query.get("limit", 50), "offset": call.query.get("offset", 0),
        "total": total}})


async def create_token(call: Call) -> web.Response:
    secret, row = await call.app[DATABASE].run(
        tokens.create_api_token, call.body["name"], Role(call.body["role"]))
    return json_reply({**row, "token": secret}, status=201)


async def list_tokens(call: Call) -> web.Response:
    rows, total = await call.app[DATABASE].run(
        tokens.list_api_tokens, limit=call.query.get("limit", 50),
        offset=call.query.get("offset", 0))
    return _page(rows, total, call)


async def revoke_token(call: Call) -> web.Response:
    row = await call.app[DATABASE].run(tokens.revoke_api_token, call.path["id"])
    token_hash = await call.app[DATABASE].run(tokens.api_token_hash, call.path["id"])
    if token_hash:
        call.app[AUTHENTICATOR].forget(token_hash)
    return json_reply(row)


def _expiry(body: dict[str, Any]) -> Any:
    # The schema allows one of the two fields and the RFC 3339 shape; what it cannot
    # say (a real calendar date, in the future) is refused here with 422.
    if "expires_at" in body:
        try:
            when = parse_iso(body["expires_at"])
        except ValueError:
            raise Unprocessable("body.expires_at: not a date the calendar has",
                                details={"field": "body.expires_at"}) from None
        if when <= utcnow():
            raise Unprocessable("body.expires_at: is in the past",
                                details={"field": "body.expires_at"})
        return when
    seconds = body.get("expires_in_seconds")
    return utcnow() + (timedelta(seconds=seconds) if seconds else DEFAULT_BOOTSTRAP_LIFETIME)


async def create_bootstrap(call: Call) -> web.Response:
    body = call.body
    secret, row = await call.app[DATABASE].run(
        tokens.create_bootstrap_token, name=body.get("name", ""),
        max_uses=body.get("max_uses", 1), expires_at=_expiry(body), group=body.get("group"),
        allow_rebind=body.get("allow_rebind", False), hostname=body.get("hostname"))
    return json_reply({**row, "token": secret}, status=201)


async def list_bootstrap(call: Call) -> web.Response:
    rows, total = await call.app[DATABASE].run(
        tokens.list_bootstrap_tokens, limit=call.query.get("limit", 50),
        offset=call.query.get("offset", 0))
    return _page(rows, total, call)


async def revoke_bootstrap(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(tokens.revoke_bootstrap_token,
                                                   call.path["id"]))


ROUTES = [
    Route("GET", "/api/v1/tokens", list_tokens, "List admin API tokens (never the secrets)",
          ADMIN, "tokens", query=PAGING, responses={200: list_of(API_TOKEN)}),
    Route("POST", "/api/v1/tokens", create_token,
          "Create an admin API token; the secret is in this answer only", ADMIN, "tokens",
          body=API_TOKEN_CREATE, responses={201: _with_secret(API_TOKEN)}),
    Route("POST", "/api/v1/tokens/{id}/revoke", revoke_token, "Revoke an admin API token",
          ADMIN, "tokens", path_params=ID_PATH, responses={200: API_TOKEN}),
    Route("GET", "/api/v1/bootstrap-tokens", list_bootstrap,
          "List bootstrap tokens (never the secrets)", ADMIN, "tokens", query=PAGING,
          responses={200: list_of(BOOTSTRAP_TOKEN)}),
    Route("POST", "/api/v1/bootstrap-tokens", create_bootstrap,
          "Create a bootstrap token (default: one use, 30 days); the secret is in this "
          "answer only", ADMIN, "tokens", body=BOOTSTRAP_CREATE,
          responses={201: _with_secret(BOOTSTRAP_TOKEN)}),
    Route("POST", "/api/v1/bootstrap-tokens/{id}/revoke", revoke_bootstrap,
          "Revoke a bootstrap token", ADMIN, "tokens", path_params=ID_PATH,
          responses={200: BOOTSTRAP_TOKEN}),
]
