"""Safe change in the UI: the audit log (admin), and the rollouts with their progress
(docs/rollouts.md); the same services as `GET /api/v1/audit` and `/api/v1/rollouts`."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.errors import ValidationFailed
from aami.server.services import audit
from aami.server.tokens import Role
from aami.server.web.middleware import require_role
from aami.server.web.pages import page
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


ROUTES = [
    page("GET", "/ui/audit", audit_page, query=(*AUDIT_FILTERS, "cursor")),
]
