"""The Agent API: the routes every node's agent calls, and their background work."""

from __future__ import annotations

from server.api.agent import routes
from server.api.agent.background import agent_background_ctx
from server.routing import Route

ROUTES: list[Route] = [*routes.ROUTES]
CLEANUP_CONTEXTS: list = [agent_background_ctx]
