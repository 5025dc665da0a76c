"""Operations on the fleet: force-runs and background jobs (admin API, long-running work)."""

from __future__ import annotations

from aami.server.api.operations import routes
from aami.server.api.operations.background import operations_ctx
from aami.server.routing import Route

ROUTES: list[Route] = [*routes.ROUTES]
CLEANUP_CONTEXTS: list = [operations_ctx]
