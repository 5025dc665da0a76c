"""Safe change in the UI: the audit log (admin), and the rollouts with their progress
(docs/rollouts.md); the same services as `GET /api/v1/audit` and `/api/v1/rollouts`."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import AGENT_CACHE, DATABASE
from aami.server.errors import NotFound, ValidationFailed
from aami.server.services import audit, rollouts
from aami.server.tokens import Role
from aami.server.web.middleware import require_role
from aami.server.web.pages import int_param, page, see_other
from aami.server.web.render import render

AUDIT_PAGE = 100
AUDIT_FILTERS = ("actor", "action", "object_type")


async def audit_page(request: web.Request) -> web.StreamResponse:
    """The audit log, newest first, with filters (admin)."""
    require_role(request, Role.ADMIN)
    filters = {k: request.query.get(k, "").strip()[:128] for k in AUDIT_FILTERS}
    cursor = request.query.get("cursor", "")
    error = None
    try:
        rows, next_cursor = await request.app[DATABASE].run(
            audit.list_entries, **{k: v or None for k, v in filters.items()},
            cursor=cursor or None, limit=AUDIT_PAGE)
    except ValidationFailed as exc:
        rows, next_cursor, error = [], None, exc.message
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return render(request, "audit.html", {
        "entries": rows, "filters": filters, "error": error,
        "next_href": f"/ui/audit?{query}&cursor={next_cursor}" if next_cursor else None})


async def rollout_list(request: web.Request) -> web.StreamResponse:
    """Rollouts, newest first, each with a progress bar."""
    state = request.query.get("state", "")
    policy = request.query.get("policy_id", "")
    rows, total = await request.app[DATABASE].run(
        rollouts.list_rollouts, state=state if state in rollouts.STATES else None,
        policy_id=int(policy) if policy.isdigit() and len(policy) < 10 else None, limit=200)
    return render(request, "rollouts.html", {"rollouts": rows, "total": total,
                                             "state": state, "states": rollouts.STATES})


async def rollout_detail(request: web.Request) -> web.StreamResponse:
    """One rollout: progress, the reason for its state, its failing targets."""
    data = await request.app[DATABASE].run(rollouts.get, int_param(request, "id"))
    return render(request, "rollout.html", {"r": data,
                                            "refresh": 3 if data["state"] == "running" else None})


async def rollout_action(request: web.Request) -> web.StreamResponse:
    """pause | resume | abort | promote (operator)."""
    user = require_role(request, Role.OPERATOR)
    rollout_id, action = int_param(request, "id"), request.match_info["action"]
    if action not in ("pause", "resume", "abort", "promote"):
        raise NotFound(f"no rollout action {action!r}", details={"action": action})
    await request.app[DATABASE].run(rollouts.act, rollout_id, action, f"ui:{user.name}")
    request.app[AGENT_CACHE].drop_all()
    raise see_other(f"/ui/rollouts/{rollout_id}")


ROUTES = [
    page("GET", "/ui/audit", audit_page, query=(*AUDIT_FILTERS, "cursor")),
    page("GET", "/ui/rollouts", rollout_list, query=("state", "policy_id")),
    page("GET", "/ui/rollouts/{id}", rollout_detail),
    page("POST", "/ui/rollouts/{id}/{action}", rollout_action),
]
