"""The Agent API's background work: the revision watcher and the status flusher.

Both live in one cleanup context: started after the database opens, stopped (with
a last flush, so no heartbeat accepted before shutdown is lost) before it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from aami.server.appkeys import (
    AGENT_CACHE,
    AUTHENTICATOR,
    CONFIG,
    DATABASE,
    EXECUTION_WRITER,
    REGISTRATION_GATE,
    STATUS_BUFFER,
)
from aami.server.caches import AgentCache, Gate
from aami.server.db import Database
from aami.server.services import heartbeats
from aami.server.services.execution_writer import ExecutionWriter
from aami.server.services.heartbeats import StatusBuffer

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


async def flush_once(database: Database, buffer: StatusBuffer) -> int:
    if not len(buffer):
        return 0
    pending = buffer.take()
    try:
        written = await database.run(heartbeats.flush, pending)
    except Exception:
        buffer.give_back(pending)  # retried next period
        raise
    buffer.keep_target_health(pending)
    buffer.flushes += 1
    buffer.rows_written += written
    return written


async def flush_target_health(database: Database, buffer: StatusBuffer) -> int:
    health = buffer.take_target_health()
    if not health:
        return 0
    try:
        return await database.run(heartbeats.flush_target_health, health)
    except Exception:
        buffer.give_back_target_health(health)
        raise


async def _flush_forever(database: Database, buffer: StatusBuffer) -> None:
    loop = asyncio.get_running_loop()
    health_due = loop.time() + heartbeats.TARGET_HEALTH_SECONDS
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            await flush_once(database, buffer)
            if loop.time() >= health_due:
                health_due = loop.time() + heartbeats.TARGET_HEALTH_SECONDS
                await flush_target_health(database, buffer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database outage: keep the buffer, try again
            log.warning("agent status flush failed (%d pending): %s", len(buffer), exc)


async def agent_background_ctx(app: web.Application) -> AsyncIterator[None]:
    config, database = app[CONFIG], app[DATABASE]
    cache = AgentCache(database, default_poll=config.poll_interval_seconds,
                       default_heartbeat=config.heartbeat_interval_seconds,
                       on_credentials=app[AUTHENTICATOR].observe_credentials)
    await cache.start()
    buffer = StatusBuffer()
    app[AGENT_CACHE] = cache
    app[STATUS_BUFFER] = buffer
    app[REGISTRATION_GATE] = Gate(max(1, config.db_threads // 2))
    writer = ExecutionWriter(database)
    writer.start()
    app[EXECUTION_WRITER] = writer
    tasks = [asyncio.create_task(cache.watch(), name="aami-revision-watcher"),
             asyncio.create_task(_flush_forever(database, buffer), name="aami-status-flush")]
    yield
    await writer.close()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:
        await flush_once(database, buffer)
        await flush_target_health(database, buffer)
    except Exception as exc:
        log.error("final agent status flush failed, %d writes lost: %s", len(buffer), exc)
