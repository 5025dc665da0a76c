"""The audit log over HTTP: the middleware that records every state-changing request
(admin API, web UI, agent registration) and `GET /api/v1/audit` (admin).

The middleware runs innermost, after authentication, once the handler has answered:
a request that succeeded (2xx, or a 3xx redirect from a web UI form) is recorded
once, with who (token name and role, or the UI user), what (an action derived from
the route, e.g. `policy.update`, `rollout.pause`), the object id (from the path, or
the `id` of the created object), a short summary (the request's fields with
secrets and bulky payloads left out), a request id (the caller's `X-Request-Id`,
or one made here, echoed in the response) and the source address. Refused and
failed requests change nothing, so they are not recorded. The server's own CLI
records its actions directly (server/cli.py).

The chain's head is logged at start-up and whenever it changed, checked every
HEAD_LOG_SECONDS: the journal (shipped off the host at most sites) then holds heads
that `aami-server audit verify --expect-head` can pin, which someone who rewrites the
database cannot reach.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from aami.server.appkeys import AUDIT_NOTE, AUTHENTICATOR, DATABASE
from aami.server.background import background
from aami.server.principal import AdminPrincipal, AgentPrincipal, BootstrapPrincipal
from aami.server.routing import ADMIN, Call, Route, json_reply
from aami.server.schemas import RFC3339_PATTERN, TIMESTAMP, limit_query, list_of, nullable, obj
from aami.server.services import audit, audit_before
from aami.server.services.ui_sessions import UiUser

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Agent API writes that are reports, not changes an operator would audit.
NOT_AUDITED = re.compile(r"^/api/v1/agent/(heartbeat|executions|security-events)$|"
                         r"^/ui/(login|logout)$")
HIDDEN = re.compile(r"token|secret|password|csrf", re.IGNORECASE)
BULKY = {"content", "envelope", "public_key", "signed", "script_content"}
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") else word


def describe(method: str, template: str) -> tuple[str, str]:
    """(action, object type) for a route template, e.g. ('policy.update', 'policy')."""
    parts = [p for p in re.sub(r"^/(api/v1|ui)/", "", template).split("/") if p]
    if parts[:1] == ["agent"]:
        return f"agent.{'-'.join(parts[1:]) or 'call'}", "target"
    object_type = _singular(parts[0]) if parts else "server"
    rest = [p for p in parts[1:] if not p.startswith("{")]
    if rest:
        return f"{object_type}.{'.'.join(rest)}", object_type
    verb = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}[method]
    if method == "POST" and len(parts) > 1:
        verb = "update"  # a form posted to an object's own page
    return f"{object_type}.{verb}", object_type


def _summary(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if HIDDEN.search(key):
            out[key] = "***"
        elif key in BULKY:
            out[key] = f"<{len(json.dumps(value, default=str))} chars>"
        else:
            out[key] = value
    return out


async def _request_fields(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {"body": body}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except ValueError:  # e.g. multipart without a boundary: nothing to summarise
            return {}
        return {k: str(v) for k, v in form.items() if isinstance(v, str)}
    return {}


async def _actor(request: web.Request) -> audit.Actor | None:
    for value in request.values():
        if isinstance(value, UiUser):  # set by the web UI's session middleware
            return audit.Actor("session", value.name, value.role.value)
    try:
        principal = await request.app[AUTHENTICATOR].authenticate(request)
    except Exception:  # the handler accepted the call; a token revoked since is no reason
        principal = None
    if isinstance(principal, AdminPrincipal):
        return audit.Actor("token", principal.name, principal.role.value)
    if isinstance(principal, AgentPrincipal):
        return audit.Actor("agent", principal.hostname)
    if isinstance(principal, BootstrapPrincipal):
        return audit.Actor("bootstrap", f"bootstrap-token-{principal.token_id}")
    return None


def _object_id(request: web.Request, response: web.StreamResponse | None,
               location: str | None) -> str | None:
    if "id" in request.match_info:
        return request.match_info["id"]
    for key in ("hostname", "name"):
        if key in request.match_info:
            return request.match_info[key]
    if isinstance(response, web.Response) and response.content_type == "application/json":
        try:
            data = json.loads(response.body or b"null")  # type: ignore[arg-type]
        except (TypeError, ValueError):
            data = None
        if isinstance(data, dict):
            for key in ("id", "target_id"):
                if isinstance(data.get(key), int | str):
                    return str(data[key])
    if location:
        found = re.search(r"/(\d+)(?:[/?#]|$)", location)
        return found.group(1) if found else None
    return None


async def _before(request: web.Request) -> dict[str, Any] | None:
    """The object an update or delete is about to change, read before the handler."""
    resource = request.match_info.route.resource
    if (request.method not in ("PUT", "PATCH", "DELETE") or resource is None
            or "id" not in request.match_info):
        return None
    _, object_type = describe(request.method, resource.canonical)
    try:
        return await request.app[DATABASE].run(audit_before.before_state, object_type,
                                                request.match_info["id"])
    except Exception as exc:  # the summary is a courtesy; the change goes ahead
        log.warning("audit: could not read %s before the change: %s", object_type, exc)
        return None


def _changed(before: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Before and after of the fields the request names (all of them for a delete)."""
    if before is None:
        return {"request": _summary(fields)}
    keys = [k for k in fields if k in before] or list(before)
    return {"before": _summary({k: before[k] for k in keys}), "request": _summary(fields)}


async def _record(request: web.Request, status: int, response: web.StreamResponse | None,
                  location: str | None, request_id: str,
                  before: dict[str, Any] | None = None) -> None:
    resource = request.match_info.route.resource
    if resource is None or NOT_AUDITED.match(resource.canonical):
        return
    actor = await _actor(request)
    if actor is None:
        return
    action, object_type = describe(request.method, resource.canonical)
    note: dict[str, Any] = request.get(AUDIT_NOTE) or {}
    try:  # whatever goes wrong here, the change was made: never turn it into an error
        summary = {"method": request.method, "path": request.path, "status": status,
                   **_changed(before, await _request_fields(request)),
                   **note.get("summary", {})}
        await request.app[DATABASE].run(
            audit.record, actor, note.get("action", action), object_type,
            note.get("object_id") or _object_id(request, response, location), summary,
            request_id=request_id, source=request.remote)
    except Exception as exc:  # the change is made; say loudly that its record is not
        log.error("audit: could not record %s %s: %s", action, request.path, exc)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
    if request.method not in WRITES or not request.path.startswith(("/api/v1/", "/ui/")):
        return await handler(request)
    before = await _before(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers["X-Request-Id"] = request_id
            await _record(request, exc.status, None, exc.headers.get("Location"), request_id,
                          before)
        raise
    if response.status < 400:
        await _record(request, response.status, response, None, request_id, before)
    response.headers["X-Request-Id"] = request_id
    return response


# An RFC 3339 time, or empty for "no bound" (what the service reads).
TIME_OR_EMPTY = {"type": "string", "maxLength": 40, "pattern": f"^$|{RFC3339_PATTERN}"}

ENTRY = obj(["id", "at", "actor", "action", "object_type", "object_id", "summary",
             "request_id", "source", "prev_hash", "hash"], {
    "id": {"type": "integer"}, "at": TIMESTAMP,
    "actor": obj(["kind", "name", "role"], {
        "kind": {"type": "string"}, "name": {"type": "string"},
        "role": nullable({"type": "string"})}),
    "action": {"type": "string"}, "object_type": {"type": "string"},
    "object_id": nullable({"type": "string"}), "summary": {"type": "object"},
    "request_id": nullable({"type": "string"}), "source": nullable({"type": "string"}),
    "prev_hash": {"type": "string"}, "hash": {"type": "string"}})


async def list_audit(call: Call) -> web.Response:
    limit = call.query.get("limit", 50)
    rows, cursor = await call.app[DATABASE].run(
        audit.list_entries, actor=call.query.get("actor"), action=call.query.get("action"),
        object_type=call.query.get("object_type"), since=call.query.get("since"),
        until=call.query.get("until"), cursor=call.query.get("cursor"), limit=limit)
    return json_reply({"data": rows, "pagination": {"limit": limit, "next_cursor": cursor}})


_TEXT = {"type": "string", "maxLength": 128}
ROUTES = [
    Route("GET", "/api/v1/audit", list_audit, "The audit log, newest first", ADMIN, "audit",
          query={"actor": _TEXT, "action": {"type": "string", "maxLength": 64},
                 "object_type": {"type": "string", "maxLength": 32},
                 "since": TIME_OR_EMPTY, "until": TIME_OR_EMPTY,
                 "cursor": {"type": "string", "maxLength": 20}, "limit": limit_query()},
          responses={200: list_of(ENTRY)}),
]
MIDDLEWARES = [audit_middleware]
HEAD_LOG_SECONDS = 300


async def _log_head_forever(app: web.Application) -> None:
    logged: tuple[int, str] | None = None
    while True:
        try:
            current = await app[DATABASE].run(audit.head)
            if current is not None and current != logged:
                # Not verified here (a walk of the whole chain): a record of what the
                # database holds now, for `audit verify --expect-head` to check later.
                log.info("audit head: entry %d, hash %s (record it; aami-server audit "
                         "verify --expect-head HASH checks the chain still holds it)",
                         *current)
                logged = current
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be away for a while
            log.warning("could not read the audit head: %s", exc)
        await asyncio.sleep(HEAD_LOG_SECONDS)


CLEANUP_CONTEXTS = [background("aami-audit-head", _log_head_forever)]
