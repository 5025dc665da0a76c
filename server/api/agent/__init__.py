"""The Agent API: the routes every node's agent calls."""

from __future__ import annotations

from server.routing import Route

ROUTES: list[Route] = []
CLEANUP_CONTEXTS: list = []
