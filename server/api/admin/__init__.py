"""The admin REST API under /api/v1: one module per resource."""

from __future__ import annotations

from server.api.admin import groups
from server.routing import Route

ROUTES: list[Route] = [*groups.ROUTES]
CLEANUP_CONTEXTS: list = []
