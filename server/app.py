"""The application factory: `create_app(config)` builds the whole server, and tests
build it the same way.

Route tables come from four places, each owning its own package:
`server.api.admin` (admin REST API), `server.api.operations` (force-runs and
background jobs), `server.api.agent` (Agent API) and `server.web` (web UI).
Each may also contribute cleanup contexts for its background work; they start
after the database is open and stop before it closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from aami.server import __version__
from aami.server.api import admin, agent, audit, downloads, operations, rollouts, system
from aami.server.appkeys import AUTHENTICATOR, CONFIG, DATABASE, HTTP_METRICS, OPENAPI
from aami.server.auth import Authenticator
from aami.server.auth_failures import AuthFailures
from aami.server.config import ServerConfig
from aami.server.db import Database
from aami.server.http_errors import error_middleware
from aami.server.http_metrics import HttpMetrics, loop_lag_ctx
from aami.server.migrations import migrate
from aami.server.openapi import build_document
from aami.server.routing import Route, add_routes

log = logging.getLogger(__name__)


def all_routes() -> list[Route]:
    from aami.server import web as web_ui

    return [*system.ROUTES, *admin.ROUTES, *operations.ROUTES, *agent.ROUTES, *downloads.ROUTES,
            *audit.ROUTES, *rollouts.ROUTES, *web_ui.ROUTES]


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    database = Database(config.database_url, threads=config.db_threads)
    await database.run(migrate, database.peewee)  # logs each migration it applies
    app[DATABASE] = database
    app[AUTHENTICATOR] = Authenticator(
        database, legacy_open=config.legacy_checks,
        failures=AuthFailures(registry=app[HTTP_METRICS].registry))
    yield
    database.close()


def create_app(config: ServerConfig) -> web.Application:
    from aami.server import web as web_ui

    metrics = HttpMetrics()
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        # The audit log records what the inner handlers did, so it is innermost.
        middlewares=[metrics.middleware(), error_middleware, *web_ui.MIDDLEWARES,
                     *audit.MIDDLEWARES],
    )
    app[CONFIG] = config
    app[HTTP_METRICS] = metrics
    routes = all_routes()
    app[OPENAPI] = build_document([r for r in routes if r.in_openapi], version=__version__)
    add_routes(app, routes)
    web_ui.SETUP(app)
    app.cleanup_ctx.append(loop_lag_ctx)
    app.cleanup_ctx.append(database_ctx)
    for package in (admin, operations, agent, rollouts, audit, web_ui):
        app.cleanup_ctx.extend(getattr(package, "CLEANUP_CONTEXTS", []))
    if config.legacy_checks:
        log.warning(
            "compat.legacy_checks is on: GET /api/v1/checks/... answers without a token"
        )
    return app
