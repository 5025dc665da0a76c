"""Heartbeats and poll times: coalesced in memory, written in one transaction a second.

20,000 agents heart-beating every 30 s are ~670 writes a second; written one by
one that is 670 transactions (and fsyncs) a second. Instead the handler drops the
heartbeat into `StatusBuffer` (latest per target wins: an older heartbeat of the
same agent carries nothing the newer one lacks) and a background task calls
`flush()` about once a second: one upsert per 1,000 agents, one `UPDATE ... IN`
for poll times. A flush also runs on shutdown. The cost: `agent_status` lags by up
to one flush period, and a process killed with SIGKILL loses at most that period.

`agent_status.scripts_*` count the executions the server stored (idempotent, so
retries never inflate them); the counters an agent reports in its heartbeat are its
own view since it started and are kept as `system_info.agent_reported`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import EXCLUDED, IntegrityError

from server.models import AgentStatus, database_proxy

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


class StatusBuffer:
    """Pending status writes. Not thread-safe: used from the event loop only."""

    def __init__(self) -> None:
        self.heartbeats: dict[int, Heartbeat] = {}
        self.polls: dict[int, datetime] = {}
        self.flushes = 0
        self.rows_written = 0

    def add_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.heartbeats[heartbeat.target_id] = heartbeat

    def add_poll(self, target_id: int, at: datetime) -> None:
        self.polls[target_id] = at

    def __len__(self) -> int:
        return len(self.heartbeats) + len(self.polls)

    def take(self) -> tuple[list[Heartbeat], dict[int, datetime]]:
        heartbeats, polls = list(self.heartbeats.values()), self.polls
        self.heartbeats, self.polls = {}, {}
        return heartbeats, polls

    def give_back(self, heartbeats: Iterable[Heartbeat], polls: dict[int, datetime]) -> None:
        """Re-queue a failed flush without overwriting anything newer."""
        for hb in heartbeats:
            self.heartbeats.setdefault(hb.target_id, hb)
        for target_id, at in polls.items():
            self.polls.setdefault(target_id, at)


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
            with database_proxy.atomic():
                _upsert([row])
            written += 1
        except IntegrityError:
            pass
    return written


def flush(heartbeats: list[Heartbeat], polls: dict[int, datetime]) -> int:
    """Write one batch in one transaction; returns the number of rows touched."""
    touched = 0
    with database_proxy.atomic():
        ordered = sorted(heartbeats, key=lambda h: h.target_id)  # stable lock order
        for start in range(0, len(ordered), CHUNK):
            rows = [_heartbeat_row(hb) for hb in ordered[start:start + CHUNK]]
            try:
                with database_proxy.atomic():  # a savepoint
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
    return touched


def derive_status(last_heartbeat: datetime | None, interval_seconds: int,
                  now: datetime) -> str:
    """online / stale / offline from the last heartbeat and the agent's own interval.

    Online while at most two heartbeats were missed (plus the flush lag); stale up to
    ten; offline after that or when it never sent one.
    """
    if last_heartbeat is None:
        return "offline"
    age = (now - last_heartbeat).total_seconds()
    interval = max(1, interval_seconds)
    if age <= 2 * interval + 2:
        return "online"
    if age <= 10 * interval:
        return "stale"
    return "offline"
