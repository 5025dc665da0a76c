"""Staged rollouts and explain over HTTP (docs/rollouts.md): list and read rollouts
(viewer), pause/resume/abort/promote them (operator), `GET /api/v1/targets/{id}/explain`
(viewer), and the background task that lets each server process take the
rollouts' own decisions once a second (services/rollout_engine.py)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from aami.server.appkeys import AGENT_CACHE, DATABASE
from aami.server.background import background
from aami.server.routing import OPERATOR, VIEWER, Call, CallHandler, Route, json_reply
from aami.server.schemas import ID_PATH, OFFSET_QUERY, limit_query, list_of, nullable, obj
from aami.server.services import explain, rollout_engine, rollouts

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0

_INT = {"type": "integer"}
_STR = {"type": "string"}
ROLLOUT = obj(["id", "policy_id", "script", "from_version", "to_version", "state", "step",
               "steps", "targets_total", "targets_on_new", "runs_ok", "runs_failed",
               "failure_ratio", "reason", "started_at", "updated_at"], {
    "id": _INT, "policy_id": _INT, "script": _STR, "from_version": nullable(_STR),
    "to_version": _STR, "state": {"enum": list(rollouts.STATES)}, "step": _INT,
    "steps": {"type": "array", "items": _INT}, "percent": _INT,
    "targets_total": _INT, "targets_on_new": _INT, "runs_ok": _INT, "runs_failed": _INT,
    "failure_ratio": nullable({"type": "number"}), "reason": _STR,
    "started_at": _STR, "updated_at": _STR,
    "failing_targets": {"type": "array", "items": {"type": "object"}}}, closed=False)
_CANDIDATE = obj(["policy_id", "name", "scope", "group", "priority", "enabled", "outcome"],
                 {"policy_id": _INT, "name": _STR, "scope": _STR, "group": nullable(_STR),
                  "priority": _INT, "enabled": {"type": "boolean"}, "outcome": _STR},
                 closed=False)
EXPLAIN = obj(["target", "policies"], {
    "target": {"type": "object"},
    "policies": {"type": "array", "items": obj(
        ["key", "chosen", "considered", "version", "params", "schedule"], {
            "key": _STR, "chosen": nullable(_CANDIDATE),
            "considered": {"type": "array", "items": _CANDIDATE},
            "version": nullable(obj(["requested", "resolved", "rollout_id", "in_cohort"], {
                "requested": _STR, "resolved": nullable(_STR),
                "rollout_id": nullable(_INT), "in_cohort": nullable({"type": "boolean"})},
                closed=False)),
            "params": nullable({"type": "object"}),
            "schedule": nullable({"type": "object"})}, closed=False)}}, closed=False)


async def list_rollouts(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        rollouts.list_rollouts, policy_id=call.query.get("policy_id"),
        state=call.query.get("state"), limit=limit, offset=offset)
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def get_rollout(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(rollouts.get, call.path["id"]))


def _action(action: str) -> CallHandler:
    async def handler(call: Call) -> web.Response:
        reply = await call.app[DATABASE].run(rollouts.act, call.path["id"], action,
                                             call.admin.name)
        call.app[AGENT_CACHE].drop_all()  # at once here; other processes within ~1 s
        return json_reply(reply)

    handler.__name__ = f"{action}_rollout"
    return handler


async def explain_target(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(explain.explain, call.path["id"]))


async def _decide_forever(app: web.Application) -> None:
    while True:
        try:
            if await app[DATABASE].run(rollout_engine.tick):
                app[AGENT_CACHE].drop_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep deciding through database outages
            log.warning("rollout tick failed: %s", exc)
        await asyncio.sleep(TICK_SECONDS)


TAG = "rollouts"
_ACTIONS = {"pause": "Pause a rollout where it is",
            "resume": "Resume a paused rollout",
            "abort": "Abort a rollout: everyone returns to the old version",
            "promote": "Promote a rollout: everyone gets the new version now"}
ROUTES = [
    Route("GET", "/api/v1/rollouts", list_rollouts, "List rollouts, newest first", VIEWER,
          TAG, query={"policy_id": ID_PATH["id"], "state": {"enum": list(rollouts.STATES)},
                      "limit": limit_query(), "offset": OFFSET_QUERY},
          responses={200: list_of(ROLLOUT)}),
    Route("GET", "/api/v1/rollouts/{id}", get_rollout,
          "Read a rollout, with its failing targets", VIEWER, TAG, path_params=ID_PATH,
          responses={200: ROLLOUT}),
    *[Route("POST", f"/api/v1/rollouts/{{id}}/{action}", _action(action), summary,
            OPERATOR, TAG, path_params=ID_PATH, responses={200: ROLLOUT})
      for action, summary in _ACTIONS.items()],
    Route("GET", "/api/v1/targets/{id}/explain", explain_target,
          "Why a target runs what it runs: every candidate policy and why it won or lost",
          VIEWER, "targets", path_params=ID_PATH, responses={200: EXPLAIN}),
]
CLEANUP_CONTEXTS = [background("aami-rollouts", _decide_forever)]
