"""The operations' share of the application's life: the job runner of this process
(services/job_runner.py) and the periodic retention pruner, started and stopped with
the application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from aami.server.appkeys import CONFIG, DATABASE, JOB_RUNNER
from aami.server.services import retention
from aami.server.services.job_runner import JobRunner, prune_once

log = logging.getLogger(__name__)

async def _retention_forever(app: web.Application, runner: JobRunner) -> None:
    seconds = app[CONFIG].retention_seconds
    period = retention.interval_seconds(seconds)
    while True:
        await asyncio.sleep(period)
        if runner.busy("retention"):
            continue
        try:
            await prune_once(app[DATABASE], seconds, runner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retention run failed: %s", exc)


async def operations_ctx(app: web.Application) -> AsyncIterator[None]:
    runner = JobRunner(app[DATABASE])
    app[JOB_RUNNER] = runner
    pruner = None
    if app[CONFIG].retention_seconds > 0:
        pruner = asyncio.create_task(_retention_forever(app, runner), name="aami-retention")
    yield
    if pruner is not None:
        pruner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruner
    await runner.close()
