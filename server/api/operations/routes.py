"""Operations: force-runs on targets and groups, and background jobs (admin API)."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import AGENT_CACHE, DATABASE, JOB_RUNNER
from aami.server.routing import OPERATOR, VIEWER, Call, Route, json_reply
from aami.server.schemas import (
    DURATION,
    ID_PATH,
    OFFSET_QUERY,
    limit_query,
    list_of,
    nullable,
    obj,
)
from aami.server.services import force_runs, jobs
from aami.server.services.job_runner import fan_out_body
from aami.server.services.policies import seconds_field

FORCE_BODY = obj(["policy_id"], {
    "policy_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    "expires_in": {**DURATION, "description": "after this agents no longer receive it "
                   "(default 1h)"}})
FORCE_ACCEPTED = obj(["id", "token", "status", "targets"], {
    "id": {"type": "integer"}, "token": {"type": "string"}, "status": {"type": "string"},
    "targets": {"type": "integer"}, "job_id": {"type": "integer"},
    "expires_at": {"type": "string"}}, closed=False)
JOB = obj(["id", "kind", "status", "progress_done", "progress_total", "detail", "error",
           "created_at", "started_at", "finished_at"], {
    "id": {"type": "integer"}, "kind": {"type": "string"},
    "status": {"enum": list(jobs.STATUSES)},
    "progress_done": {"type": "integer"}, "progress_total": {"type": "integer"},
    "detail": {"type": "object"}, "error": nullable({"type": "string"}),
    "created_at": {"type": "string"}, "started_at": nullable({"type": "string"}),
    "finished_at": nullable({"type": "string"})}, closed=False)
FORCE_STATUS = obj(["id", "token", "policy_id", "status", "targets", "counts", "results"], {
    "id": {"type": "integer"}, "token": {"type": "string"}, "policy_id": {"type": "integer"},
    "target_id": nullable({"type": "integer"}), "group_id": nullable({"type": "integer"}),
    "status": {"enum": ["pending", "done", "expired", "cancelled"]},
    "targets": {"type": "integer"}, "expires_at": nullable({"type": "string"}),
    "cancelled_at": nullable({"type": "string"}),
    "counts": {"type": "object"}, "job": nullable(JOB),
    "results": {"type": "array", "items": {"type": "object"}}}, closed=False)


def _expires_in(body: dict) -> int:
    if body.get("expires_in") is None:
        return force_runs.DEFAULT_EXPIRES_SECONDS
    return seconds_field(body["expires_in"], "body.expires_in")


async def force_target(call: Call) -> web.Response:
    reply = await call.app[DATABASE].run(force_runs.request_target, call.body["policy_id"],
                                         call.path["id"], call.admin.name,
                                         _expires_in(call.body))
    # At once in this process; other processes' watchers see the new row within ~1 s.
    call.app[AGENT_CACHE].invalidate(call.path["id"])
    return json_reply(reply, status=202)


async def force_group(call: Call) -> web.Response:
    database = call.app[DATABASE]
    reply = await database.run(force_runs.request_group, call.body["policy_id"],
                               call.path["id"], call.admin.name, _expires_in(call.body))
    call.app[JOB_RUNNER].spawn(reply["job_id"], fan_out_body(database, reply["id"]),
                               kind="force_run")
    return json_reply(reply, status=202)


async def force_status(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(force_runs.status, call.path["id"]))


async def force_cancel(call: Call) -> web.Response:
    reply = await call.app[DATABASE].run(force_runs.cancel, call.path["id"])
    call.app[AGENT_CACHE].drop_all()  # at once here; other processes within ~1 s
    return json_reply(reply)


async def list_jobs(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        jobs.list_jobs, kind=call.query.get("kind"), status=call.query.get("status"),
        limit=limit, offset=offset)
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def get_job(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(jobs.get, call.path["id"]))


TAG = "operations"
ROUTES = [
    Route("POST", "/api/v1/targets/{id}/force-run", force_target,
          "Run a policy on a target now", OPERATOR, TAG, path_params=ID_PATH,
          body=FORCE_BODY, responses={202: FORCE_ACCEPTED}),
    Route("POST", "/api/v1/groups/{id}/force-run", force_group,
          "Run a policy on every target of a group now (a background job)", OPERATOR, TAG,
          path_params=ID_PATH, body=FORCE_BODY, responses={202: FORCE_ACCEPTED}),
    Route("GET", "/api/v1/force-runs/{id}", force_status, "Status of a force-run request",
          VIEWER, TAG, path_params=ID_PATH, responses={200: FORCE_STATUS}),
    Route("POST", "/api/v1/force-runs/{id}/cancel", force_cancel,
          "Cancel the targets of a force-run that have not run it yet", OPERATOR, TAG,
          path_params=ID_PATH, responses={200: FORCE_STATUS}),
    Route("GET", "/api/v1/jobs", list_jobs, "List background jobs", VIEWER, TAG,
          query={"kind": {"type": "string", "maxLength": 32},
                 "status": {"enum": list(jobs.STATUSES)},
                 "limit": limit_query(), "offset": OFFSET_QUERY},
          responses={200: list_of(JOB)}),
    Route("GET", "/api/v1/jobs/{id}", get_job, "Read a background job", VIEWER, TAG,
          path_params=ID_PATH, responses={200: JOB}),
]
