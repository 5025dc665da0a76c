"""The Agent API: the routes every node's agent calls, and their background work."""

from __future__ import annotations

from aami.server.api.agent import routes
from aami.server.api.agent.background import agent_background_ctx
from aami.server.routing import Route

ROUTES: list[Route] = [*routes.ROUTES]
CLEANUP_CONTEXTS: list = [agent_background_ctx]
