"""Step 6: send spooled results and security events to the server, exactly once.

Exactly-once rests on two facts: the execution id is made before the run and never
changes (it is in the running marker, the spooled record and the report), and the
server de-duplicates by id. So the reporter may safely re-send anything it is not
sure arrived: a record leaves the spool only after the server acknowledged the batch
that carried it. A crash between the acknowledgement and the delete just re-sends
records the server then counts as duplicates.

Batches are `Limits.report_batch_size` records; a 413 splits a batch in halves, and a
single record still too large is re-sent with its output shortened. Transport errors
stop the flush (the records stay spooled) and propagate so the caller can back off;
a 401 INVALID_TOKEN propagates so the caller can re-register.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aami.agent.client import AgentClient, InvalidToken, PayloadTooLarge, ServerRefused
from aami.agent.records import ExecutionReport, SecurityEvent
from aami.agent.spool import Spool
from aami.agent.wire import Ack

log = logging.getLogger("aami.agent.reporter")

SHORT_OUTPUT = 4096

Send = Callable[[Sequence[Mapping[str, Any]]], Awaitable[Ack]]
R = TypeVar("R", ExecutionReport, SecurityEvent)


@dataclass
class ReportStats:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0


def refuses_the_records(exc: ServerRefused) -> bool:
    """Only the server's own documented 400/422 says a record is bad. A 429, a 403, or
    an error page from a proxy says nothing about the records: setting them aside on
    such an answer would let a broken middlebox empty every node's spool."""
    return exc.status in (400, 422) and exc.documented


class Reporter:
    def __init__(
        self,
        client: AgentClient,
        executions: Spool[ExecutionReport],
        events: Spool[SecurityEvent],
        *,
        batch_size: int,
    ) -> None:
        self.client = client
        self.executions = executions
        self.events = events
        self.batch_size = batch_size
        self.progress: Callable[[], None] = lambda: None  # the report loop's watchdog

    async def flush(self) -> ReportStats:
        """Send everything spooled; raises the client's error if the server is away."""
        stats = ReportStats()
        await self._drain(self.events, self.client.post_security_events, stats)
        await self._drain(self.executions, self.client.post_executions, stats)
        return stats

    async def _drain(self, spool: Spool[R], send: Send, stats: ReportStats) -> None:
        while batch := spool.pending(self.batch_size):
            await self._send(spool, send, batch, stats)

    async def _send(
        self,
        spool: Spool[R],
        send: Send,
        batch: list[tuple[Path, R]],
        stats: ReportStats,
    ) -> None:
        try:
            ack = await send([record.to_json() for _, record in batch])
        except PayloadTooLarge:
            if len(batch) > 1:
                await self._split(spool, send, batch, stats)
                return
            await self._send_one_shortened(spool, send, batch[0], stats)
            return
        except InvalidToken:
            raise
        except ServerRefused as exc:
            if not refuses_the_records(exc):
                raise  # a failed report: everything stays spooled for the next one
            # A 400/422 must not block the spool forever: find the bad record by
            # halving, set it aside for an operator, and let the rest through.
            if len(batch) > 1:
                await self._split(spool, send, batch, stats)
                return
            self._reject(spool, batch[0][0], exc, stats)
            return
        stats.accepted += ack.accepted
        stats.duplicates += ack.duplicates
        spool.remove([path for path, _ in batch])
        self.progress()

    async def _split(
        self, spool: Spool[R], send: Send, batch: list[tuple[Path, R]], stats: ReportStats
    ) -> None:
        half = len(batch) // 2
        await self._send(spool, send, batch[:half], stats)
        await self._send(spool, send, batch[half:], stats)

    def _reject(self, spool: Spool[R], path: Path, exc: ServerRefused, stats: ReportStats) -> None:
        log.error("the server rejected spooled record %s (%s); kept as %s.rejected",
                  path.name, exc, path.name)
        path.rename(path.with_name(path.name + ".rejected"))
        spool.add_dropped(1)
        stats.dropped += 1

    async def _send_one_shortened(
        self, spool: Spool[R], send: Send, item: tuple[Path, R], stats: ReportStats
    ) -> None:
        path, record = item
        short = record.shortened(SHORT_OUTPUT) if isinstance(record, ExecutionReport) else record
        try:
            ack = await send([short.to_json()])
        except PayloadTooLarge:
            log.error("record %s is too large for the server even shortened; dropped", record.id)
            spool.remove([path])
            spool.add_dropped(1)
            stats.dropped += 1
            return
        except InvalidToken:
            raise
        except ServerRefused as exc:
            if not refuses_the_records(exc):
                raise
            self._reject(spool, path, exc, stats)
            return
        stats.accepted += ack.accepted
        stats.duplicates += ack.duplicates
        spool.remove([path])
