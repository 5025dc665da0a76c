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

Each flush also judges every heartbeat against the one before it (same transaction,
one read of the previous `agent_status` rows): was the gap within the interval the
agent was told, give or take `GAP_TOLERANCE_SECONDS`, and how many polls did it make
and fail since (deltas of its cumulative poll counters). The fleet's sums land in one
`fleet_health_minute` row per flush; the per-target sums are kept in memory and
written per hour every `TARGET_HEALTH_SECONDS` (a SIGKILL loses at most that much of
them). server/services/fleet_health.py reads both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from peewee import EXCLUDED, IntegrityError

from aami.server.db import is_postgres, tuples, write_transaction
from aami.server.models import AgentStatus, FleetHealthMinute, TargetHealthHour, database_proxy

CHUNK = 1000
GAP_TOLERANCE_SECONDS = 5.0  # the seed's heartbeat compliance: interval ± 5 s
TARGET_HEALTH_SECONDS = 60.0


@dataclass(frozen=True)
class Heartbeat:
    target_id: int
    at: datetime
    agent_version: str
    uptime_seconds: int
    heartbeat_interval_seconds: int
    system_info: dict[str, Any]
    polls_total: int | None = None  # None: an agent too old to report its polls
    polls_failed: int | None = None


def heartbeat_from_body(target_id: int, at: datetime, interval: int,
                        body: dict[str, Any]) -> Heartbeat:
    info = dict(body.get("system_info") or {})
    info["agent_reported"] = {key: body.get(key, 0) for key in
                              ("scripts_total", "scripts_success", "scripts_failed")}
    polls = body.get("polls_total")
    return Heartbeat(target_id, at, body["agent_version"], int(body["uptime_seconds"]),
                     interval, info, None if polls is None else int(polls),
                     None if polls is None else int(body.get("polls_failed", 0)))


@dataclass(frozen=True)
class Previous:
    """What `agent_status` held before this heartbeat."""

    last_heartbeat: datetime | None
    interval_seconds: int
    uptime_seconds: int
    polls_total: int
    polls_failed: int


@dataclass
class Health:
    """Heartbeat gaps and polls, summed (per minute, per hour, per target)."""

    heartbeat_gaps: int = 0
    heartbeat_gaps_ok: int = 0
    polls: int = 0
    polls_failed: int = 0

    def add(self, other: Health) -> None:
        self.heartbeat_gaps += other.heartbeat_gaps
        self.heartbeat_gaps_ok += other.heartbeat_gaps_ok
        self.polls += other.polls
        self.polls_failed += other.polls_failed


def judge(previous: Previous | None, hb: Heartbeat) -> Health:
    """One heartbeat's contribution. Pure.

    The gap is judged against the interval the agent was told with the previous
    heartbeat (that is what it slept). A first heartbeat has no gap, and neither has
    the first one of a restarted agent process (lower uptime): a restart is not an
    interval, and its downtime shows as the target's state instead. Poll counters are
    cumulative per agent process, so a restarted agent's counters are its delta."""
    health = Health()
    restarted = previous is not None and (
        hb.uptime_seconds < previous.uptime_seconds
        or (hb.polls_total is not None and (hb.polls_total < previous.polls_total
                                            or (hb.polls_failed or 0) < previous.polls_failed)))
    if previous is not None and previous.last_heartbeat is not None and not restarted \
            and hb.at > previous.last_heartbeat:
        gap = (hb.at - previous.last_heartbeat).total_seconds()
        health.heartbeat_gaps = 1
        health.heartbeat_gaps_ok = int(
            abs(gap - previous.interval_seconds) <= GAP_TOLERANCE_SECONDS)
    if hb.polls_total is not None and hb.polls_failed is not None:
        base = previous if previous is not None and not restarted else None
        health.polls = hb.polls_total - (base.polls_total if base else 0)
        failed = hb.polls_failed - (base.polls_failed if base else 0)
        health.polls_failed = min(health.polls, failed)
    return health


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


TargetHealth = dict[tuple[int, datetime], Health]


def add_health(into: TargetHealth, more: TargetHealth) -> None:
    for key, value in more.items():
        into.setdefault(key, Health()).add(value)


@dataclass
class Pending:
    heartbeats: dict[int, Heartbeat] = field(default_factory=dict)
    polls: dict[int, datetime] = field(default_factory=dict)
    # target id -> [total, success, failed] executions stored since the last flush
    counts: dict[int, list[int]] = field(default_factory=dict)
    # (target id, hour) -> what the flushed heartbeats said (written less often)
    target_health: TargetHealth = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.heartbeats) + len(self.polls) + len(self.counts)


class StatusBuffer:
    """Pending status writes. Not thread-safe: used from the event loop only."""

    def __init__(self) -> None:
        self.pending = Pending()
        self.target_health: TargetHealth = {}  # flushed, waiting for its hourly rows
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

    def keep_target_health(self, flushed: Pending) -> None:
        add_health(self.target_health, flushed.target_health)

    def take_target_health(self) -> TargetHealth:
        taken, self.target_health = self.target_health, {}
        return taken

    def give_back_target_health(self, failed: TargetHealth) -> None:
        add_health(self.target_health, failed)


def _heartbeat_row(hb: Heartbeat) -> dict[str, Any]:
    return {"target": hb.target_id, "agent_version": hb.agent_version[:64],
            "last_heartbeat": hb.at, "uptime_seconds": hb.uptime_seconds,
            "heartbeat_interval_seconds": hb.heartbeat_interval_seconds,
            "system_info": hb.system_info, "polls_total": hb.polls_total or 0,
            "polls_failed": hb.polls_failed or 0}


def _upsert(rows: list[dict[str, Any]]) -> None:
    (AgentStatus.insert_many(rows)
     .on_conflict(conflict_target=[AgentStatus.target], update={
         AgentStatus.agent_version: EXCLUDED.agent_version,
         AgentStatus.last_heartbeat: EXCLUDED.last_heartbeat,
         AgentStatus.uptime_seconds: EXCLUDED.uptime_seconds,
         AgentStatus.heartbeat_interval_seconds: EXCLUDED.heartbeat_interval_seconds,
         AgentStatus.system_info: EXCLUDED.system_info,
         AgentStatus.polls_total: EXCLUDED.polls_total,
         AgentStatus.polls_failed: EXCLUDED.polls_failed})
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


def _previous(target_ids: list[int]) -> dict[int, Previous]:
    found: dict[int, Previous] = {}
    for start in range(0, len(target_ids), CHUNK):
        for target_id, *values in tuples(
                AgentStatus.select(AgentStatus.target, AgentStatus.last_heartbeat,
                                   AgentStatus.heartbeat_interval_seconds,
                                   AgentStatus.uptime_seconds, AgentStatus.polls_total,
                                   AgentStatus.polls_failed)
                .where(AgentStatus.target.in_(target_ids[start:start + CHUNK]))):
            found[target_id] = Previous(*values)
    return found


def _add_fleet_health(minute: datetime, health: Health) -> None:
    (FleetHealthMinute.insert(minute=minute, heartbeat_gaps=health.heartbeat_gaps,
                              heartbeat_gaps_ok=health.heartbeat_gaps_ok,
                              polls=health.polls, polls_failed=health.polls_failed)
     .on_conflict(conflict_target=[FleetHealthMinute.minute], update={
         getattr(FleetHealthMinute, name): getattr(FleetHealthMinute, name)
         + getattr(EXCLUDED, name)
         for name in ("heartbeat_gaps", "heartbeat_gaps_ok", "polls", "polls_failed")})
     .execute())


def flush(pending: Pending) -> int:
    """Write one batch in one transaction; returns the number of rows touched. The
    heartbeats' per-target health is left in `pending.target_health` for the caller
    to keep until `flush_target_health`."""
    heartbeats, polls = list(pending.heartbeats.values()), pending.polls
    touched = 0
    with write_transaction():
        if is_postgres(database_proxy.obj):
            # Status is a lossy cache refreshed every few seconds: not worth an fsync
            # wait (a crash loses at most the last few hundred milliseconds of it).
            database_proxy.execute_sql("SET LOCAL synchronous_commit TO OFF")
        ordered = sorted(heartbeats, key=lambda h: h.target_id)  # stable lock order
        if ordered:
            previous = _previous([hb.target_id for hb in ordered])
            fleet = Health()
            for hb in ordered:
                health = judge(previous.get(hb.target_id), hb)
                fleet.add(health)
                add_health(pending.target_health, {(hb.target_id, hour_of(hb.at)): health})
            _add_fleet_health(minute_of(max(hb.at for hb in ordered)), fleet)
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


def flush_target_health(health: TargetHealth) -> int:
    """Add the per-target sums to their hourly rows; returns the rows written."""
    names = ("heartbeat_gaps", "heartbeat_gaps_ok", "polls", "polls_failed")
    rows = [{"target": target_id, "hour": hour, **{n: getattr(h, n) for n in names}}
            for (target_id, hour), h in sorted(health.items())]
    written = 0
    with write_transaction():
        if is_postgres(database_proxy.obj):
            database_proxy.execute_sql("SET LOCAL synchronous_commit TO OFF")
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            try:
                with write_transaction():  # a savepoint: a deleted target fails alone
                    _upsert_target_health(chunk, names)
                written += len(chunk)
            except IntegrityError:
                for row in chunk:
                    try:
                        with write_transaction():
                            _upsert_target_health([row], names)
                        written += 1
                    except IntegrityError:
                        pass
    return written


def _upsert_target_health(rows: list[dict[str, Any]], names: tuple[str, ...]) -> None:
    (TargetHealthHour.insert_many(rows)
     .on_conflict(conflict_target=[TargetHealthHour.target, TargetHealthHour.hour],
                  update={getattr(TargetHealthHour, n): getattr(TargetHealthHour, n)
                          + getattr(EXCLUDED, n) for n in names})
     .execute())
