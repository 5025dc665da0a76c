"""Group commit for execution reports.

20,000 agents reporting every minute are ~330 requests a second; one transaction
each means ~330 commits (each waiting for the disk) and as many round trips for
the INSERT. Instead each request hands its validated rows to `ExecutionWriter` and
waits: a writer takes *everything queued so far* and stores it in one transaction
(`execution_ingest.store`), then answers every waiting request with its own
accepted/duplicate counts. There is no timer: under light load a batch is one
request (no added latency); under heavy load batches grow by themselves while the
previous commit is in flight. Two writers overlap one commit's disk wait with the
next batch's work.

If a grouped transaction fails, its requests are retried one by one, so one bad
request (say, its target was deleted a moment ago) fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aami.server.db import Database
from aami.server.services.execution_ingest import Batch, IngestResult, store

log = logging.getLogger(__name__)

Waiting = tuple[Batch, "asyncio.Future[IngestResult]"]


class ExecutionWriter:
    def __init__(self, database: Database, *, writers: int = 2, max_rows: int = 5000) -> None:
        self._db = database
        self._queue: asyncio.Queue[Waiting] = asyncio.Queue()
        self._writers = writers
        self._max_rows = max_rows
        self._tasks: list[asyncio.Task[None]] = []
        self.transactions = 0
        self.requests = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"aami-exec-writer-{i}")
                       for i in range(self._writers)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():  # requests that arrived during shutdown
            await self._write([self._queue.get_nowait()])

    async def submit(self, batch: Batch) -> IngestResult:
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((batch, future))
        return await future

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            rows = len(group[0][0].rows)
            while not self._queue.empty() and rows < self._max_rows:
                item = self._queue.get_nowait()
                group.append(item)
                rows += len(item[0].rows)
            await self._write(group)

    async def _write(self, group: list[Waiting]) -> None:
        live = [(b, f) for b, f in group if not f.done()]  # the caller went away
        if not live:
            return
        try:
            results = await self._db.run(store, [b for b, _ in live])
            self.transactions += 1
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0][1], exc=exc)
                return
            log.warning("grouped execution write failed (%s); retrying one by one", exc)
            for item in live:
                await self._write([item])
            return
        self.requests += len(live)
        for (_, future), result in zip(live, results, strict=True):
            _settle(future, result=result)


def _settle(future: asyncio.Future[IngestResult], *, result: IngestResult | None = None,
            exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)
