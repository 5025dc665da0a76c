"""Typed application state: every `web.AppKey` the server uses, declared in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aami.server.auth import Authenticator
    from aami.server.config import ServerConfig
    from aami.server.db import Database
    from aami.server.http_metrics import HttpMetrics

CONFIG: web.AppKey[ServerConfig] = web.AppKey("config")
DATABASE: web.AppKey[Database] = web.AppKey("database")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
HTTP_METRICS: web.AppKey[HttpMetrics] = web.AppKey("http_metrics")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
