"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE, HTTP_METRICS, OPENAPI
from aami.server.db import ping
from aami.server.routing import PUBLIC, Call, Route, json_reply


async def health(call: Call) -> web.Response:
    return json_reply({"status": "ok"})


async def ready(call: Call) -> web.Response:
    await call.app[DATABASE].run(ping)
    return json_reply({"status": "ready", "database": "ok"})


async def metrics(call: Call) -> web.Response:
    body = call.app[HTTP_METRICS].render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Format": "prometheus-0.0.4"})


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
