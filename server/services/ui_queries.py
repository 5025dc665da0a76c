"""Read-only aggregates only the web UI needs (the admin API has no equivalent):
execution outcomes per time bucket for the charts, failing policies, and the
dashboard's recent lists. Functions run in the database thread pool.

Bucketing is done in SQL (one GROUP BY over the time range, using the
`started_at` indexes) so a chart over a day of a large fleet's executions never
pulls the rows themselves into Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aami.server.db import is_postgres
from aami.server.models import Group, Policy, Target, database_proxy

# peewee's implicit primary keys are invisible to the type checker.
POLICY_ID: Any = Policy._meta.primary_key


@dataclass(frozen=True)
class Bucket:
    """One bar of an outcome chart."""

    start: datetime
    success: int
    failed: int


@dataclass(frozen=True)
class Window:
    """A chart's time range: `count` buckets of `seconds` each, ending at `end`."""

    end: datetime
    seconds: int
    count: int

    @property
    def start(self) -> datetime:
        return self.end - timedelta(seconds=self.seconds * self.count)


def aligned_window(now: datetime, seconds: int, count: int) -> Window:
    """Buckets aligned to whole multiples of `seconds`, the last one holding `now`."""
    epoch = datetime(1970, 1, 1)
    elapsed = int((now - epoch).total_seconds())
    end = epoch + timedelta(seconds=(elapsed // seconds + 1) * seconds)
    return Window(end=end, seconds=seconds, count=count)


def outcome_buckets(window: Window, target_id: int | None = None,
                    policy_id: int | None = None) -> list[Bucket]:
    """Successes and failures per bucket of `window` (fleet-wide, or one target/policy)."""
    db = database_proxy.obj
    start = window.start
    if is_postgres(db):
        bucket = "FLOOR(EXTRACT(EPOCH FROM (started_at - %s)) / %s)"
        mark = "%s"
    else:
        bucket = "CAST((julianday(started_at) - julianday(?)) * 86400 / ? AS INTEGER)"
        mark = "?"
    where = [f"started_at >= {mark}", f"started_at < {mark}"]
    params: list[Any] = [start, window.seconds, start, window.end]
    if target_id is not None:
        where.append(f"target_id = {mark}")
        params.append(target_id)
    if policy_id is not None:
        where.append(f"script_policy_id = {mark}")
        params.append(policy_id)
    sql = (f"SELECT {bucket} AS b, success, COUNT(*) FROM script_executions "  # noqa: S608
           f"WHERE {' AND '.join(where)} GROUP BY b, success")
    counts: dict[int, list[int]] = {}
    for index, success, count in db.execute_sql(sql, params):
        slot = counts.setdefault(int(index), [0, 0])
        slot[0 if success else 1] += int(count)
    return [Bucket(start + timedelta(seconds=i * window.seconds), *counts.get(i, [0, 0]))
            for i in range(window.count)]


def failing_policies(since: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """Policies with failed runs since `since`: most failures first.

    `+script_policy_id` keeps SQLite from picking the (policy, started_at) index for
    the GROUP BY (a scan of every policy's whole history); the time range on the
    `script_executions_window` index is the cheap path on both databases."""
    mark = "%s" if is_postgres(database_proxy.obj) else "?"
    sql = ("SELECT +script_policy_id AS p, COUNT(*) AS n, COUNT(DISTINCT target_id), "  # noqa: S608
           "MAX(started_at) FROM script_executions "
           f"WHERE started_at >= {mark} AND success = {mark} "
           f"AND script_policy_id IS NOT NULL GROUP BY p ORDER BY n DESC LIMIT {mark}")
    found = list(database_proxy.obj.execute_sql(sql, [since, False, limit]))
    pairs: Any = (Policy.select(POLICY_ID, Policy.name)
                  .where(POLICY_ID.in_([row[0] for row in found])).tuples())
    names: dict[int, str] = dict(pairs)
    return [{"policy_id": policy_id, "name": names.get(policy_id, "?"), "failures": failures,
             "targets": targets, "last": last}
            for policy_id, failures, targets, last in found]


def policies_for_target(target_id: int) -> list[dict[str, Any]]:
    """Enabled policies that apply to a target (global, its groups', its own): the
    choices of its force-run form. Which one wins per script is the resolver's job;
    a force-run may name any policy that applies."""
    from aami.server.models import TargetGroup

    group_ids = TargetGroup.select(TargetGroup.group).where(TargetGroup.target == target_id)
    rows: Any = (Policy.select(POLICY_ID, Policy.name, Policy.script_name, Policy.scope)
            .where(Policy.enabled == True,  # noqa: E712
                   (Policy.scope == "global")
                   | ((Policy.scope == "group") & Policy.group.in_(group_ids))
                   | ((Policy.scope == "target") & (Policy.target == target_id)))
            .order_by(Policy.name).dicts())
    return list[dict[str, Any]](rows)


def policies_for_group(group_id: int) -> list[dict[str, Any]]:
    """Enabled policies a group force-run may name: global ones and the group's own."""
    rows: Any = (Policy.select(POLICY_ID, Policy.name, Policy.script_name, Policy.scope)
            .where(Policy.enabled == True,  # noqa: E712
                   (Policy.scope == "global")
                   | ((Policy.scope == "group") & (Policy.group == group_id)))
            .order_by(Policy.name).dicts())
    return list[dict[str, Any]](rows)


def script_names() -> list[str]:
    from aami.server.models import Script

    rows: Any = Script.select(Script.name).distinct().order_by(Script.name).tuples()
    return [r[0] for r in rows]


def policies_using_script(name: str) -> list[dict[str, Any]]:
    """The policies that name a script (its detail page)."""
    rows: Any = (Policy.select(POLICY_ID, Policy.name, Policy.version, Policy.enabled)
                 .where(Policy.script_name == name).order_by(Policy.name).dicts())
    return list(rows)


def policies_scoped_to_group(group_id: int) -> list[dict[str, Any]]:
    rows: Any = (Policy.select(POLICY_ID, Policy.name, Policy.script_name, Policy.enabled)
                 .where(Policy.group == group_id).order_by(Policy.name).dicts())
    return list(rows)


def id_by_name(kind: str, name: str) -> int | None:
    """A target's id by hostname (kind "target") or a group's by name (kind "group")."""
    row: Any = (Target.get_or_none(Target.hostname == name) if kind == "target"
                else Group.get_or_none(Group.name == name))
    return None if row is None else int(row.id)
