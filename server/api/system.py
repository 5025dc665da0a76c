"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from aami.server.appkeys import DATABASE, HTTP_METRICS, OPENAPI
from aami.server.db import ping
from aami.server.routing import PUBLIC, Call, Route, json_reply
from aami.server.services import fleet_health

log = logging.getLogger(__name__)
FLEET_METRICS_SECONDS = 15.0
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def health(call: Call) -> web.Response:
    return json_reply({"status": "ok"})


async def ready(call: Call) -> web.Response:
    await call.app[DATABASE].run(ping)
    return json_reply({"status": "ready", "database": "ok"})


async def metrics(call: Call) -> web.Response:
    body = call.app[HTTP_METRICS].render() + await _fleet_metrics(call.app)
    # The exposition format's own media type, parameters included: Prometheus and
    # promtool pick the parser by it (docs/api.md, "System").
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _fleet_metrics(app: web.Application) -> bytes:
    """The fleet's success metrics over the last hour, from the database (the same on
    every process), recomputed at most every FLEET_METRICS_SECONDS."""
    metrics = app[HTTP_METRICS]
    now = time.monotonic()
    if metrics.fleet_text is None or now - metrics.fleet_at >= FLEET_METRICS_SECONDS:
        try:
            health = await app[DATABASE].run(fleet_health.fleet_health, 3600)
        except Exception as exc:  # the process's own metrics still answer
            log.warning("fleet metrics unavailable: %s", exc)
            return metrics.fleet_text or b""
        metrics.fleet_text = fleet_health.exposition(health, "1h").encode()
        metrics.fleet_at = now
    return metrics.fleet_text


async def openapi(call: Call) -> web.Response:
    return json_reply(call.app[OPENAPI])


STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}

ROUTES = [
    Route("GET", "/health", health, "Liveness: the process answers", PUBLIC, "system",
          responses={200: STATUS}),
    Route("GET", "/health/ready", ready, "Readiness: the database answers", PUBLIC, "system",
          responses={200: STATUS}),
    Route("GET", "/metrics", metrics, "Prometheus metrics", PUBLIC, "system",
          responses={200: None}, response_media={200: "text/plain"}),
    Route("GET", "/api/openapi.json", openapi, "This document", PUBLIC, "system",
          responses={200: {"type": "object"}}),
]
