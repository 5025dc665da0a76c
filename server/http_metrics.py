"""Request counts and latencies in Prometheus format, labelled by route template
(never by raw path: ids in paths would explode the label set), and the event
loop's lag: how late a timer fires tells an operator that this process is out of
CPU (requests queue before any handler's clock starts) when the per-route
latencies still look fine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from aami.server.appkeys import HTTP_METRICS
from aami.server.http_errors import Handler

LAG_PERIOD = 0.25


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.fleet_text: bytes | None = None  # cached by api/system.py
        self.fleet_at = 0.0
        self.requests = Counter(
            "aami_server_http_requests_total", "HTTP requests served",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "aami_server_http_request_duration_seconds", "HTTP request latency",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.loop_lag = Histogram(
            "aami_server_event_loop_lag_seconds",
            f"How late a {LAG_PERIOD}s timer fires on the event loop",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    async def sample_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PERIOD
            await asyncio.sleep(LAG_PERIOD)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # One of several processes on a port (server/supervisor.py): report the
            # sum over all of them, whichever one the scrape reached.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def middleware(self) -> web.middleware:  # type: ignore[valid-type]
        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                self.requests.labels(request.method, route, str(status)).inc()
                self.latency.labels(request.method, route).observe(
                    time.perf_counter() - start
                )

        return observe


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[HTTP_METRICS].sample_loop_lag(), name="aami-loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
