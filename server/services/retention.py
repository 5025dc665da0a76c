"""Retention: executions older than `retention_seconds` are pruned in small batches.

Each batch is its own short transaction deleting at most `BATCH` rows picked by the
`(started_at, id)` index, so pruning months of history never holds a long lock
that would stall agents reporting new results. Several server processes may prune
at once; a row can only be deleted once, so they merely share the work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aami.server.db import tuples, write_transaction
from aami.server.models import FleetHealthMinute, ScriptExecution, TargetHealthHour
from aami.server.timefmt import utcnow

BATCH = 1000


def cutoff(retention_seconds: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=retention_seconds)


def count_older(before: datetime) -> int:
    return int(ScriptExecution.select().where(ScriptExecution.started_at < before).count())


def prune_batch(before: datetime, limit: int = BATCH) -> int:
    """Delete up to `limit` executions that started before `before`; returns how many."""
    with write_transaction():
        ids = [row[0] for row in tuples(
            ScriptExecution.select(ScriptExecution.id)
            .where(ScriptExecution.started_at < before)
            .order_by(ScriptExecution.started_at).limit(limit))]
        if not ids:
            return 0
        return int(ScriptExecution.delete().where(ScriptExecution.id.in_(ids)).execute())


def prune_health(before: datetime) -> int:
    """The fleet-health sums follow the executions' retention (two small tables)."""
    with write_transaction():
        minutes = FleetHealthMinute.delete().where(FleetHealthMinute.minute < before).execute()
        hours = TargetHealthHour.delete().where(TargetHealthHour.hour < before).execute()
    return int(minutes) + int(hours)


def interval_seconds(retention_seconds: float) -> float:
    """How often to prune: a tenth of the retention, between 1 s and 1 h."""
    return min(3600.0, max(1.0, retention_seconds / 10))
