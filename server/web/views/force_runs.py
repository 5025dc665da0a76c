"""Force-run from the UI: the same service and background fan-out as
`POST /api/v1/targets/{id}/force-run` and `POST /api/v1/groups/{id}/force-run`, then a
status page that refreshes itself until every target has reported."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import AGENT_CACHE, DATABASE, JOB_RUNNER
from aami.server.errors import NotFound, ValidationFailed
from aami.server.services import force_runs, policies, ui_queries
from aami.server.services.job_runner import fan_out_body
from aami.server.tokens import Role
from aami.server.web.middleware import require_role
from aami.server.web.pages import int_param, page, see_other
from aami.server.web.render import render

REFRESH_SECONDS = 3


async def _policy_id(request: web.Request) -> int:
    form = await request.post()
    raw = str(form.get("policy_id", ""))
    if not raw.isdigit():
        raise ValidationFailed("choose a policy to run", details={"field": "policy_id"})
    return int(raw)


async def _on_target(request: web.Request, policy_id: int, target_id: int) -> web.StreamResponse:
    user = require_role(request, Role.OPERATOR)
    reply = await request.app[DATABASE].run(force_runs.request_target, policy_id, target_id,
                                            f"ui:{user.name}")
    raise see_other(f"/ui/force-runs/{reply['id']}")


async def _on_group(request: web.Request, policy_id: int, group_id: int) -> web.StreamResponse:
    user = require_role(request, Role.OPERATOR)
    database = request.app[DATABASE]
    reply = await database.run(force_runs.request_group, policy_id, group_id,
                               f"ui:{user.name}")
    request.app[JOB_RUNNER].spawn(reply["job_id"], fan_out_body(database, reply["id"]),
                                  kind="force_run")
    raise see_other(f"/ui/force-runs/{reply['id']}")


async def force_target(request: web.Request) -> web.StreamResponse:
    """Force-run a policy on one target (operator)."""
    require_role(request, Role.OPERATOR)
    return await _on_target(request, await _policy_id(request), int_param(request, "id"))


async def force_group(request: web.Request) -> web.StreamResponse:
    """Force-run a policy on every member of a group (operator)."""
    require_role(request, Role.OPERATOR)
    return await _on_group(request, await _policy_id(request), int_param(request, "id"))


def _find(kind: str, name: str) -> int:
    found = ui_queries.id_by_name(kind, name)
    if found is None:
        raise NotFound(f"{kind} {name!r} does not exist", details={"field": kind})
    return found


async def force_policy(request: web.Request) -> web.StreamResponse:
    """Force-run this policy on a target or a group (operator)."""
    require_role(request, Role.OPERATOR)
    policy_id = int_param(request, "id")
    await request.app[DATABASE].run(policies.get, policy_id)
    form = await request.post()
    target = str(form.get("target", "")).strip()
    group = str(form.get("group", "")).strip()
    if bool(target) == bool(group):
        raise ValidationFailed("name either a target or a group to run the policy on",
                               details={"field": "target"})
    if target:
        target_id = await request.app[DATABASE].run(_find, "target", target)
        return await _on_target(request, policy_id, target_id)
    group_id = await request.app[DATABASE].run(_find, "group", group)
    return await _on_group(request, policy_id, group_id)


def _status_data(force_run_id: int) -> dict:
    status = force_runs.status(force_run_id, limit=200)
    policy = policies.to_wire(policies.get(status["policy_id"]))
    return {"run": status, "policy": policy}


async def force_status(request: web.Request) -> web.StreamResponse:
    """A force-run's progress; refreshes itself while targets are pending."""
    data = await request.app[DATABASE].run(_status_data, int_param(request, "id"))
    data["refresh"] = REFRESH_SECONDS if data["run"]["status"] == "pending" else None
    return render(request, "force_run.html", data)


async def force_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel the targets that have not run the force-run yet (operator)."""
    require_role(request, Role.OPERATOR)
    force_run_id = int_param(request, "id")
    await request.app[DATABASE].run(force_runs.cancel, force_run_id)
    request.app[AGENT_CACHE].drop_all()
    raise see_other(f"/ui/force-runs/{force_run_id}")


ROUTES = [
    page("POST", "/ui/targets/{id}/force-run", force_target),
    page("POST", "/ui/groups/{id}/force-run", force_group),
    page("POST", "/ui/policies/{id}/force-run", force_policy),
    page("GET", "/ui/force-runs/{id}", force_status),
    page("POST", "/ui/force-runs/{id}/cancel", force_cancel),
]
