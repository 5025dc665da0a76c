"""Heartbeats and poll times: coalesced in memory, written in one transaction a second.

20,000 agents heart-beating every 30 s are ~670 writes a second; written one by
one that is 670 transactions (and fsyncs) a second. Instead the handler drops the
heartbeat into `StatusBuffer` (latest per target wins: an older heartbeat of the
same agent carries nothing the newer one lacks) and a background task calls
`flush()` about once a second: one upsert per 1,000 agents, one `UPDATE ... IN`
for poll times. A flush also runs on shutdown. The cost: `agent_status` lags by up
to one flush period, and a process killed with SIGKILL loses at most that period.

`agent_status.scripts_*` count the executions the server stored (idempotent, so
retries never inflate them); the increments ride in the same buffer, so storing
results never waits for a lock on a status row. The counters an agent reports in
its heartbeat are its own view since it started and are kept as
`system_info.agent_reported`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from peewee import EXCLUDED, IntegrityError

from aami.server.db import is_postgres, write_transaction
from aami.server.models import AgentStatus, database_proxy

CHUNK = 1000


@dataclass(frozen=True)
class Heartbeat:
    target_id: int
    at: datetime
    agent_version: str
    uptime_seconds: int
    heartbeat_interval_seconds: int
    system_info: dict[str, Any]


def heartbeat_from_body(target_id: int, at: datetime, interval: int,
                        body: dict[str, Any]) -> Heartbeat:
    info = dict(body.get("system_info") or {})
    info["agent_reported"] = {key: body.get(key, 0) for key in
                              ("scripts_total", "scripts_success", "scripts_failed")}
    return Heartbeat(target_id, at, body["agent_version"], int(body["uptime_seconds"]),
                     interval, info)


@dataclass
class Pending:
    heartbeats: dict[int, Heartbeat] = field(default_factory=dict)
    polls: dict[int, datetime] = field(default_factory=dict)
    # target id -> [total, success, failed] executions stored since the last flush
    counts: dict[int, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.heartbeats) + len(self.polls) + len(self.counts)


class StatusBuffer:
    """Pending status writes. Not thread-safe: used from the event loop only."""

    def __init__(self) -> None:
        self.pending = Pending()
        self.flushes = 0
        self.rows_written = 0

    def add_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.pending.heartbeats[heartbeat.target_id] = heartbeat

    def add_poll(self, target_id: int, at: datetime) -> None:
        self.pending.polls[target_id] = at

    def add_counts(self, target_id: int, total: int, success: int) -> None:
        counts = self.pending.counts.setdefault(target_id, [0, 0, 0])
        counts[0] += total
        counts[1] += success
        counts[2] += total - success

    def __len__(self) -> int:
        return len(self.pending)

    def take(self) -> Pending:
        taken, self.pending = self.pending, Pending()
        return taken

    def give_back(self, failed: Pending) -> None:
        """Re-queue a failed flush without overwriting anything newer."""
        for target_id, hb in failed.heartbeats.items():
            self.pending.heartbeats.setdefault(target_id, hb)
        for target_id, at in failed.polls.items():
            self.pending.polls.setdefault(target_id, at)
        for target_id, (total, success, _) in failed.counts.items():
            self.add_counts(target_id, total, success)


def _heartbeat_row(hb: Heartbeat) -> dict[str, Any]:
    return {"target": hb.target_id, "agent_version": hb.agent_version[:64],
            "last_heartbeat": hb.at, "uptime_seconds": hb.uptime_seconds,
            "heartbeat_interval_seconds": hb.heartbeat_interval_seconds,
            "system_info": hb.system_info}


def _upsert(rows: list[dict[str, Any]]) -> None:
    (AgentStatus.insert_many(rows)
     .on_conflict(conflict_target=[AgentStatus.target], update={
         AgentStatus.agent_version: EXCLUDED.agent_version,
         AgentStatus.last_heartbeat: EXCLUDED.last_heartbeat,
         AgentStatus.uptime_seconds: EXCLUDED.uptime_seconds,
         AgentStatus.heartbeat_interval_seconds: EXCLUDED.heartbeat_interval_seconds,
         AgentStatus.system_info: EXCLUDED.system_info})
     .execute())


def _upsert_one_by_one(rows: list[dict[str, Any]]) -> int:
    written = 0
    for row in rows:
        try:
            with write_transaction():
                _upsert([row])
            written += 1
        except IntegrityError:
            pass
    return written


def flush(pending: Pending) -> int:
    """Write one batch in one transaction; returns the number of rows touched."""
    heartbeats, polls = list(pending.heartbeats.values()), pending.polls
    touched = 0
    with write_transaction():
        if is_postgres(database_proxy.obj):
            # Status is a lossy cache refreshed every few seconds: not worth an fsync
            # wait (a crash loses at most the last few hundred milliseconds of it).
            database_proxy.execute_sql("SET LOCAL synchronous_commit TO OFF")
        ordered = sorted(heartbeats, key=lambda h: h.target_id)  # stable lock order
        for start in range(0, len(ordered), CHUNK):
            rows = [_heartbeat_row(hb) for hb in ordered[start:start + CHUNK]]
            try:
                with write_transaction():  # a savepoint
                    _upsert(rows)
                touched += len(rows)
            except IntegrityError:
                # A target deleted since its agent's token was cached: write the
                # others one by one and drop the orphan.
                touched += _upsert_one_by_one(rows)
        # One timestamp per flush: poll times are only as precise as the flush period.
        if polls:
            at = max(polls.values())
            ids = sorted(polls)
            for start in range(0, len(ids), CHUNK):
                touched += (AgentStatus.update(last_poll=at)
                            .where(AgentStatus.target.in_(ids[start:start + CHUNK]))
                            .execute())
        for target_id in sorted(pending.counts):
            total, success, failed = pending.counts[target_id]
            touched += (AgentStatus.update(
                scripts_total=AgentStatus.scripts_total + total,
                scripts_success=AgentStatus.scripts_success + success,
                scripts_failed=AgentStatus.scripts_failed + failed)
                .where(AgentStatus.target == target_id).execute())
    return touched

