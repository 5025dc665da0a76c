"""The fleet's success metrics, measured by the server from what agents send.

    heartbeat_compliance  share of heartbeat gaps within the told interval ± 5 s
    poll_success_rate     polls that succeeded / polls made (the agents' own counters,
                          carried by their heartbeats: a poll that never reached the
                          server is counted by the agent that made it)
    script_success_rate   successful runs / runs stored, overall and per policy

over a window ending now. Heartbeat and poll sums come from `fleet_health_minute`
(the fleet) or `target_health_hour` (one target), written by the status flush
(services/heartbeats.py); runs from `script_executions`. Rates are fractions 0-1, or
None when there is nothing to measure. Functions run in the database thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from aami.server.db import is_postgres, tuples
from aami.server.models import FleetHealthMinute, Policy, TargetHealthHour, database_proxy
from aami.server.services import targets
from aami.server.timefmt import utcnow

# The seed's targets, shown beside the figures (dashboard, docs/agent.md).
TARGETS = {"heartbeat_compliance": 0.95, "poll_success_rate": 0.999}
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 30 * 86400


@dataclass(frozen=True)
class Counts:
    heartbeat_gaps: int = 0
    heartbeat_gaps_ok: int = 0
    polls: int = 0
    polls_failed: int = 0
    runs: int = 0
    runs_ok: int = 0


def ratio(part: int, whole: int) -> float | None:
    return None if whole <= 0 else round(part / whole, 6)


def _sums(model: Any, time_field: Any, since: datetime, until: datetime,
          *where: Any) -> tuple[int, int, int, int]:
    fn = peewee.fn
    row = (model.select(fn.COALESCE(fn.SUM(model.heartbeat_gaps), 0),
                        fn.COALESCE(fn.SUM(model.heartbeat_gaps_ok), 0),
                        fn.COALESCE(fn.SUM(model.polls), 0),
                        fn.COALESCE(fn.SUM(model.polls_failed), 0))
           .where(time_field >= since, time_field < until, *where).tuples().first())
    return tuple(int(v) for v in row) if row else (0, 0, 0, 0)  # type: ignore[return-value]


def _runs_per_policy(since: datetime, until: datetime,
                     target_id: int | None) -> list[tuple[int | None, int, int]]:
    mark = "%s" if is_postgres(database_proxy.obj) else "?"
    where = f"started_at >= {mark} AND started_at < {mark}"
    args: list[object] = [since, until]
    if target_id is not None:
        where += f" AND target_id = {mark}"
        args.append(target_id)
    # `+script_policy_id`: as in ui_queries.failing_policies, keep SQLite on the time
    # index rather than a scan of every policy's whole history.
    ok = "CASE WHEN success THEN 1 ELSE 0 END"
    sql = (f"SELECT +script_policy_id AS p, COUNT(*), SUM({ok}) "  # noqa: S608
           f"FROM script_executions WHERE {where} GROUP BY p")
    return [(p, int(n), int(k or 0)) for p, n, k in database_proxy.obj.execute_sql(sql, args)]


def _status_counts(target_id: int | None) -> dict[str, int]:
    if target_id is not None:
        status = targets.read(target_id)["status"]
        return {name: int(name == status) for name in targets.STATUSES}
    counts = {}
    for status in targets.STATUSES:
        _, counts[status] = targets.list_targets(hostname=None, group=None, status=status,
                                                 limit=1, offset=0)
    return counts


def fleet_health(window_seconds: int, *, target_id: int | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """The success metrics over the last `window_seconds` (for one target, if given:
    its heartbeat and poll sums are hourly, so its window starts at a whole hour)."""
    until = (now or utcnow()) + timedelta(minutes=1)  # the current minute counts
    since = until - timedelta(seconds=window_seconds)
    if target_id is None:
        gaps, gaps_ok, polls, failed = _sums(FleetHealthMinute, FleetHealthMinute.minute,
                                             since, until)
    else:
        hour = since.replace(minute=0, second=0, microsecond=0)
        gaps, gaps_ok, polls, failed = _sums(TargetHealthHour, TargetHealthHour.hour, hour,
                                             until, TargetHealthHour.target == target_id)
    runs = _runs_per_policy(since, until, target_id)
    names: dict[int, str] = dict(tuples(
        Policy.select(Policy.id, Policy.name)
        .where(Policy.id.in_([p for p, _, _ in runs if p is not None]))))
    counts = Counts(gaps, gaps_ok, polls, failed, sum(n for _, n, _ in runs),
                    sum(k for _, _, k in runs))
    return {
        "window_seconds": window_seconds,
        "heartbeat_compliance": ratio(counts.heartbeat_gaps_ok, counts.heartbeat_gaps),
        "poll_success_rate": ratio(counts.polls - counts.polls_failed, counts.polls),
        "script_success_rate": ratio(counts.runs_ok, counts.runs),
        "targets": _status_counts(target_id),
        "policies": sorted(
            ({"policy_id": p, "name": names.get(p, "?"), "success_rate": ratio(k, n),
              "runs": n} for p, n, k in runs if p is not None),
            key=lambda item: (item["success_rate"], item["name"])),
        "counts": vars(counts),
        "targets_expected": dict(TARGETS),
    }


def exposition(health: dict[str, Any], window: str) -> str:
    """The figures as Prometheus text (server /metrics), labelled by window. Pure.
    A rate with nothing to measure is left out rather than reported as 0."""
    lines = []

    def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        if samples:
            lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])
            lines.extend(f"{name}{{{labels}}} {value}" for labels, value in samples)

    for key, name, text in (
            ("heartbeat_compliance", "aami_fleet_heartbeat_compliance_ratio",
             "Share of heartbeat gaps within the interval +-5 s"),
            ("poll_success_rate", "aami_fleet_poll_success_ratio",
             "Share of agent polls that succeeded"),
            ("script_success_rate", "aami_fleet_script_success_ratio",
             "Share of script runs that succeeded")):
        value = health[key]
        family(name, "gauge", text, [] if value is None else [(f'window="{window}"', value)])
    family("aami_fleet_targets", "gauge", "Targets by agent state",
           [(f'state="{state}"', count) for state, count in sorted(health["targets"].items())])
    family("aami_fleet_policy_success_ratio", "gauge",
           "Share of a policy's runs that succeeded",
           [(f'window="{window}",policy="{p["name"]}"', p["success_rate"])
            for p in health["policies"] if p["success_rate"] is not None])
    return "\n".join(lines) + "\n" if lines else ""
