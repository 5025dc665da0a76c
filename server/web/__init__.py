"""The web UI (server-rendered pages)."""

from __future__ import annotations

from server.routing import Route

ROUTES: list[Route] = []
MIDDLEWARES: list = []
CLEANUP_CONTEXTS: list = []
