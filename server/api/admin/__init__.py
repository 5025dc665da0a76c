"""The admin REST API under /api/v1: one module per resource."""

from __future__ import annotations

from aami.server.api import compat
from aami.server.api.admin import (
    executions,
    fleet,
    groups,
    policies,
    publisher_keys,
    scripts,
    targets,
    tokens,
)
from aami.server.routing import Route

ROUTES: list[Route] = [
    *groups.ROUTES,
    *targets.ROUTES,
    *publisher_keys.ROUTES,
    *scripts.ROUTES,
    *policies.ROUTES,
    *tokens.ROUTES,
    *executions.ROUTES,
    *fleet.ROUTES,
    *compat.ROUTES,  # the legacy cron runner's route (its own access kind)
]
CLEANUP_CONTEXTS: list = []
