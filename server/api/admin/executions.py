"""Admin API: /api/v1/executions and /api/v1/security-events (viewers read).

Both are keyset-paged: `pagination.next_cursor` is null on the last page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.errors import ValidationFailed
from aami.server.routing import VIEWER, Call, Route, json_reply
from aami.server.schemas import NAME, NULLABLE_TIMESTAMP, TIMESTAMP, limit_query
from aami.server.services import execution_history
from aami.server.timefmt import parse_iso

UUID = {"type": "string", "minLength": 1, "maxLength": 36, "pattern": "^[0-9A-Za-z-]+$"}
ID_QUERY = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
TIME_QUERY = {"type": "string", "format": "date-time", "maxLength": 64}
CURSOR = {"type": "string", "maxLength": 512}
PAGINATION = {
    "type": "object", "required": ["limit", "next_cursor"],
    "properties": {"limit": {"type": "integer"}, "next_cursor": {"type": ["string", "null"]}},
}
EXECUTION = {
    "type": "object",
    "required": ["id", "target_id", "hostname", "policy_id", "script_name", "script_version",
                 "script_hash", "started_at", "finished_at", "duration_ms", "exit_code",
                 "success", "stdout", "stderr", "error_message", "trigger", "force_token"],
    "properties": {
        "id": {"type": "string"}, "target_id": {"type": "integer"},
        "hostname": {"type": "string"}, "policy_id": {"type": ["integer", "null"]},
        "script_name": {"type": "string"}, "script_version": {"type": "string"},
        "script_hash": {"type": "string"}, "started_at": TIMESTAMP,
        "finished_at": NULLABLE_TIMESTAMP, "duration_ms": {"type": ["integer", "null"]},
        "exit_code": {"type": ["integer", "null"]}, "success": {"type": "boolean"},
        "stdout": {"type": "string"}, "stderr": {"type": "string"},
        "error_message": {"type": ["string", "null"]}, "trigger": {"type": "string"},
        "force_token": {"type": ["string", "null"]},
    },
}
SECURITY_EVENT = {
    "type": "object",
    "required": ["id", "target_id", "hostname", "reason", "message", "occurred_at"],
    "properties": {
        "id": {"type": "string"}, "target_id": {"type": "integer"},
        "hostname": {"type": "string"}, "policy_id": {"type": ["integer", "null"]},
        "script_name": {"type": "string"}, "script_version": {"type": "string"},
        "script_hash": {"type": "string"}, "reason": {"type": "string"},
        "message": {"type": "string"}, "occurred_at": TIMESTAMP,
        "received_at": TIMESTAMP,
    },
}


def _keyset_list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data", "pagination"],
            "properties": {"data": {"type": "array", "items": item}, "pagination": PAGINATION}}


def _time(call: Call, name: str) -> datetime | None:
    text = call.query.get(name)
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise ValidationFailed(f"query.{name}: expected an RFC 3339 time such as "
                               "2026-01-01T00:00:00Z", details={"field": f"query.{name}"}) from None


async def list_executions(call: Call) -> web.Response:
    q = call.query
    limit = q.get("limit", 50)
    rows, next_cursor = await call.app[DATABASE].run(
        execution_history.list_executions, target_id=q.get("target_id"),
        policy_id=q.get("policy_id"), script=q.get("script"), success=q.get("success"),
        since=_time(call, "since"), until=_time(call, "until"), cursor=q.get("cursor"),
        limit=limit)
    return json_reply({"data": rows, "pagination": {"limit": limit, "next_cursor": next_cursor}})


async def get_execution(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(execution_history.read_execution,
                                                   call.path["id"]))


async def list_security_events(call: Call) -> web.Response:
    q = call.query
    limit = q.get("limit", 50)
    rows, next_cursor = await call.app[DATABASE].run(
        execution_history.list_security_events, target_id=q.get("target_id"),
        reason=q.get("reason"), since=_time(call, "since"), until=_time(call, "until"),
        cursor=q.get("cursor"), limit=limit)
    return json_reply({"data": rows, "pagination": {"limit": limit, "next_cursor": next_cursor}})


ROUTES = [
    Route("GET", "/api/v1/executions", list_executions,
          "List executions, newest first (keyset paging with `cursor`)", VIEWER, "executions",
          query={"target_id": ID_QUERY, "policy_id": ID_QUERY, "script": NAME,
                 "success": {"type": "boolean"}, "since": TIME_QUERY, "until": TIME_QUERY,
                 "cursor": CURSOR, "limit": limit_query()},
          responses={200: _keyset_list(EXECUTION)}),
    Route("GET", "/api/v1/executions/{id}", get_execution,
          "Read one execution by the UUID its agent made", VIEWER, "executions",
          path_params={"id": UUID}, responses={200: EXECUTION}),
    Route("GET", "/api/v1/security-events", list_security_events,
          "List security events (refusals agents reported), newest first", VIEWER,
          "executions",
          query={"target_id": ID_QUERY, "reason": {"type": "string", "maxLength": 64},
                 "since": TIME_QUERY, "until": TIME_QUERY, "cursor": CURSOR,
                 "limit": limit_query()},
          responses={200: _keyset_list(SECURITY_EVENT)}),
]
