"""Operations on the fleet: force-runs and background jobs (admin API, long-running work)."""

from __future__ import annotations

from server.routing import Route

ROUTES: list[Route] = []
CLEANUP_CONTEXTS: list = []
