"""Background jobs of this process, and the retention pruner that runs as one.

`JobRunner` owns the asyncio tasks of the jobs this process started: on shutdown
they are cancelled, awaited, and their rows marked failed ("interrupted") so that
no job is left looking alive. Not HTTP: the API, the web UI and the application's
cleanup context all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aami.server.db import Database
from aami.server.services import force_runs, jobs, retention
from aami.server.timefmt import iso

log = logging.getLogger(__name__)

JobBody = Callable[[int], Awaitable[None]]


class JobRunner:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._kinds: dict[int, str] = {}

    def spawn(self, job_id: int, body: JobBody, *, kind: str) -> None:
        task = asyncio.create_task(self._run(job_id, body), name=f"aami-job-{job_id}")
        self._tasks[job_id] = task
        self._kinds[job_id] = kind
        task.add_done_callback(lambda _: self._forget(job_id))

    def _forget(self, job_id: int) -> None:
        self._tasks.pop(job_id, None)
        self._kinds.pop(job_id, None)

    def busy(self, kind: str) -> bool:
        return kind in self._kinds.values()

    async def _run(self, job_id: int, body: JobBody) -> None:
        try:
            await self._db.run(jobs.start, job_id)
            await body(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %d failed", job_id)
            await self._db.run(jobs.finish, job_id, error=str(exc).splitlines()[0][:500])

    async def close(self) -> None:
        running = list(self._tasks)
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._db.run(jobs.interrupt, running, "interrupted: the server process stopped")


def fan_out_body(database: Database, force_run_id: int) -> JobBody:
    async def body(job_id: int) -> None:
        after, scanned, added, skipped = 0, 0, 0, 0
        while True:
            after, seen, new, skip = await database.run(force_runs.fan_out_chunk,
                                                        force_run_id, after)
            if not seen:
                break
            scanned, added, skipped = scanned + seen, added + new, skipped + skip
            await database.run(jobs.progress, job_id, scanned, detail=_detail(
                force_run_id, added, skipped))
        await database.run(jobs.finish, job_id, detail=_detail(force_run_id, added, skipped))
    return body


def _detail(force_run_id: int, added: int, skipped: int) -> dict[str, int]:
    # `skipped`: members the policy does not apply to (e.g. a more specific scope).
    return {"force_run_id": force_run_id, "targets": added, "skipped": skipped}


async def prune_once(database: Database, retention_seconds: float, runner: JobRunner
                     ) -> int | None:
    """Start a retention job if anything is old enough; returns its id."""
    before = retention.cutoff(retention_seconds)
    total = await database.run(retention.count_older, before)
    if not total:
        return None
    job_id = await database.run(jobs.create, "retention", total=total,
                                detail={"before": iso(before), "deleted": 0})

    async def body(job_id: int) -> None:
        deleted = 0
        while batch := await database.run(retention.prune_batch, before):
            deleted += batch
            await database.run(jobs.progress, job_id, deleted,
                               detail={"before": iso(before), "deleted": deleted})
            await asyncio.sleep(0.01)  # let agents' writes in between batches
        await database.run(retention.prune_health, before)
        await database.run(jobs.finish, job_id,
                           detail={"before": iso(before), "deleted": deleted})

    runner.spawn(job_id, body, kind="retention")
    return job_id
