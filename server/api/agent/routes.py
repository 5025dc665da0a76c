"""Agent API handlers: /api/v1/agent/*. Thin: parse, call the service, reply.

Every handler other than `register` acts only for `call.agent.target_id`, the
target the caller's own token is bound to; no route takes a target id from the
request, so there is nothing to point at another node's data.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict

from aiohttp import web

from aami.server.api.agent import schemas as s
from aami.server.appkeys import (
    AGENT_CACHE,
    AUDIT_NOTE,
    AUTHENTICATOR,
    CONFIG,
    DATABASE,
    EXECUTION_WRITER,
    REGISTRATION_GATE,
    STATUS_BUFFER,
)
from aami.server.auth import Authenticator
from aami.server.errors import Conflict, Forbidden, InvalidToken, NotFound, PayloadTooLarge
from aami.server.http_errors import error_response
from aami.server.logsafe import escape_controls, token_prefix
from aami.server.principal import BootstrapPrincipal
from aami.server.routing import AGENT, BOOTSTRAP, Call, Route, json_reply
from aami.server.schemas import SHA256
from aami.server.services import (
    execution_ingest,
    force_runs,
    registration,
    security_event_ingest,
)
from aami.server.services.assignments import TargetView
from aami.server.services.heartbeats import heartbeat_from_body
from aami.server.timefmt import utcnow
from aami.server.tokens import hash_token

log = logging.getLogger(__name__)
TAG = "agent"
REGISTRATION_QUEUE_MAX = 200  # per process: a few seconds of work, well inside agent timeouts


async def register(call: Call) -> web.Response:
    assert isinstance(call.principal, BootstrapPrincipal)
    config = call.app[CONFIG]
    # Registrations are the heaviest writes; a fleet arriving at once must not take
    # every database thread from the polls and heartbeats of agents already running,
    # and must not queue past its agents' timeouts (work done for nobody): beyond
    # REGISTRATION_QUEUE_MAX waiting, shed load with 503 + Retry-After.
    gate = call.app[REGISTRATION_GATE]
    if gate.waiting >= REGISTRATION_QUEUE_MAX:
        retry = random.randint(5, 30)  # noqa: S311 - jitter, not a secret
        reply = error_response(503, "SERVICE_UNAVAILABLE",
                               "too many agents are registering at once; retry later",
                               {"retry_after_seconds": retry})
        reply.headers["Retry-After"] = str(retry)
        return reply
    async with gate:
        try:
            result = await call.app[DATABASE].run(
                registration.register, call.principal.token_id, call.body,
                default_heartbeat=config.heartbeat_interval_seconds)
        except InvalidToken:
            # Used up, revoked or expired since it was cached: look it up again next time.
            call.app[AUTHENTICATOR].forget(hash_token(Authenticator.bearer(call.request) or ""))
            raise
        except (Conflict, Forbidden) as exc:
            # A node claiming a name it may not have: the operator must see it here,
            # not only in that node's own log.
            log.warning("registration refused: hostname %s from %s with bootstrap token "
                        "%s: %s", escape_controls(str(call.body.get("hostname"))),
                        call.request.remote,
                        token_prefix(Authenticator.bearer(call.request) or ""), exc.message)
            raise
    for old in result.revoked_hashes:
        call.app[AUTHENTICATOR].forget(old)
    if result.revoked_hashes:  # a re-imaged node replaced its former self
        call.request[AUDIT_NOTE] = {"action": "agent.rebind", "summary": {
            "replaced_agent_tokens": len(result.revoked_hashes)}}
    cache = call.app[AGENT_CACHE]
    if result.new_target_groups is not None:
        view = await cache.seed_new(result.target_id, result.hostname,
                                    result.new_target_groups)
    else:
        cache.invalidate(result.target_id)  # a re-bound target may have joined a group
        view = await cache.view(result.target_id, result.hostname)
    return json_reply({"target_id": result.target_id, "agent_token": result.agent_token,
                       **asdict(view.intervals)}, status=201)


async def rotate_token(call: Call) -> web.Response:
    agent = call.agent
    secret = await call.app[DATABASE].run(registration.rotate, agent.token_id, agent.target_id)
    old = Authenticator.bearer(call.request)
    if old:
        call.app[AUTHENTICATOR].forget(hash_token(old))
    return json_reply({"agent_token": secret})


async def _view(call: Call) -> TargetView:
    return await call.app[AGENT_CACHE].view(call.agent.target_id, call.agent.hostname)


async def heartbeat(call: Call) -> web.Response:
    view = await _view(call)
    call.app[STATUS_BUFFER].add_heartbeat(heartbeat_from_body(
        view.target_id, utcnow(), view.intervals.heartbeat_interval_seconds, call.body))
    return json_reply(asdict(view.intervals))


async def agent_config(call: Call) -> web.Response:
    view = await _view(call)
    return json_reply({"target_id": view.target_id, "hostname": view.hostname,
                       "groups": list(view.groups), **asdict(view.intervals)})


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/").strip('"') == etag:
            return True
    return False


async def get_assignments(call: Call) -> web.StreamResponse:
    view = await _view(call)
    call.app[STATUS_BUFFER].add_poll(view.target_id, utcnow())
    if view.force_tokens:  # only while a force-run is open for this target
        await call.app[DATABASE].run(force_runs.mark_delivered, view.target_id,
                                     sorted(view.force_tokens))
    headers = {"ETag": f'"{view.etag}"', "Cache-Control": "no-cache"}
    if _etag_matches(call.request.headers.get("If-None-Match"), view.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=view.body, content_type="application/json", headers=headers)


async def get_script(call: Call) -> web.Response:
    sha256 = call.path["sha256"]
    view = await _view(call)
    # Only what the caller is assigned: a node cannot harvest every script by hash.
    content = (await call.app[AGENT_CACHE].script_content(sha256)
               if sha256 in view.script_hashes else None)
    if content is None:
        raise NotFound("no script with this hash is assigned to this agent",
                       details={"sha256": sha256})
    return web.Response(body=content, content_type="application/octet-stream",
                        headers={"ETag": f'"{sha256}"'})


def _check_batch(call: Call, items: list[object], field: str) -> None:
    limit = call.app[CONFIG].limits.max_execution_batch
    if len(items) > limit:
        raise PayloadTooLarge(f"body.{field}: {len(items)} items; at most {limit} per request",
                              details={"field": f"body.{field}", "max_items": limit})


async def post_executions(call: Call) -> web.Response:
    items = call.body["executions"]
    _check_batch(call, items, "executions")
    view = await _view(call)
    allowed = view.policy_ids | set(view.force_tokens.values())
    batch = execution_ingest.prepare(view.target_id, items, allowed,
                                     call.app[CONFIG].limits.max_output_bytes)
    result = await call.app[EXECUTION_WRITER].submit(batch)
    call.app[STATUS_BUFFER].add_counts(view.target_id, result.accepted, result.succeeded)
    if result.accepted and any(i.get("force_token") for i in items):
        call.app[AGENT_CACHE].invalidate(view.target_id)  # the token is spent
    return json_reply({"accepted": result.accepted, "duplicates": result.duplicates})


async def post_security_events(call: Call) -> web.Response:
    items = call.body["events"]
    _check_batch(call, items, "events")
    view = await _view(call)
    result = await call.app[DATABASE].run(
        security_event_ingest.ingest, view.target_id, items,
        view.policy_ids | set(view.force_tokens.values()))
    return json_reply({"accepted": result.accepted, "duplicates": result.duplicates})


BASE = "/api/v1/agent"
ROUTES = [
    Route("POST", f"{BASE}/register", register, "Trade a bootstrap token for an agent token",
          BOOTSTRAP, TAG, body=s.REGISTER_BODY, responses={201: s.REGISTERED},
          replace_nul=True),
    Route("POST", f"{BASE}/rotate-token", rotate_token, "Replace the caller's agent token",
          AGENT, TAG, responses={200: s.ROTATED}),
    Route("POST", f"{BASE}/heartbeat", heartbeat, "Report liveness; returns the intervals",
          AGENT, TAG, body=s.HEARTBEAT_BODY, responses={200: s.HEARTBEAT_REPLY},
          replace_nul=True),
    Route("GET", f"{BASE}/config", agent_config, "Intervals and groups of this agent",
          AGENT, TAG, responses={200: s.AGENT_CONFIG}),
    Route("GET", f"{BASE}/assignments", get_assignments, "This agent's assignments (ETag)",
          AGENT, TAG, responses={200: s.ASSIGNMENTS, 304: None},
          request_headers={"If-None-Match": {"type": "string"}}),
    Route("GET", f"{BASE}/scripts/{{sha256}}", get_script,
          "Script content by hash (assigned scripts only)", AGENT, TAG,
          path_params={"sha256": SHA256}, responses={200: None},
          response_media={200: "application/octet-stream"}),
    Route("POST", f"{BASE}/executions", post_executions, "Report execution results",
          AGENT, TAG, body=s.EXECUTIONS_BODY, responses={200: s.INGESTED},
          replace_nul=True),
    Route("POST", f"{BASE}/security-events", post_security_events,
          "Report refusals to run a script", AGENT, TAG, body=s.EVENTS_BODY,
          responses={200: s.INGESTED}, replace_nul=True),
]
