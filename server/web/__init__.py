"""The web UI: server-rendered pages under /ui (aiohttp-jinja2, no external assets).

Pages share the admin API's services (`server.services.*`), run every query in the
database thread pool, and are guarded by one middleware (session, CSRF, roles,
security headers; see `middleware.py`). `docs/web-ui.md` describes the pages.
"""

from __future__ import annotations

from aami.server.routing import Route
from aami.server.web.middleware import ui_middleware
from aami.server.web.render import setup_templates
from aami.server.web.views import (
    auth,
    catalog,
    change,
    dashboard,
    fleet,
    force_runs,
    policies,
    targets,
)

ROUTES: list[Route] = [*auth.ROUTES, *dashboard.ROUTES, *targets.ROUTES, *catalog.ROUTES,
                       *policies.ROUTES, *fleet.ROUTES, *force_runs.ROUTES, *change.ROUTES]
MIDDLEWARES: list = [ui_middleware]
CLEANUP_CONTEXTS: list = []
SETUP = setup_templates  # called once by create_app, before the app is frozen
