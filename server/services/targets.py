"""Targets (nodes): hostname, labels, group memberships, and the agent's status.

A target's `status` is derived, never stored: it depends on the clock. The rule is
the pure function `derive_status`; listing by status turns the same rule into SQL
(one range condition per distinct heartbeat interval, so it stays portable across
SQLite and PostgreSQL and can use the index on `last_heartbeat`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import peewee

from aami.server.db import tuples, write_transaction
from aami.server.errors import Conflict, NotFound, Unprocessable
from aami.server.models import AgentStatus, Group, Target, TargetGroup
from aami.server.services import groups as group_service
from aami.server.services import revision
from aami.server.timefmt import iso, utcnow

STATUSES = ("online", "stale", "offline", "never")
ONLINE_FACTOR = 2  # heartbeats missed before a target is no longer "online"
STALE_FACTOR = 10  # ... and before it is "offline"


def derive_status(last_heartbeat: datetime | None, interval_seconds: int | None,
                  now: datetime) -> str:
    """online within 2x the heartbeat interval, stale within 10x, offline beyond,
    never without any heartbeat. A heartbeat from the future (clock skew) is online."""
    if last_heartbeat is None:
        return "never"
    interval = max(1, interval_seconds or 30)
    age = (now - last_heartbeat).total_seconds()
    if age <= ONLINE_FACTOR * interval:
        return "online"
    if age <= STALE_FACTOR * interval:
        return "stale"
    return "offline"


def _status_condition(status: str, now: datetime) -> Any:
    """SQL for `derive_status(...) == status`, on a query joined to AgentStatus (LEFT)."""
    if status == "never":
        return AgentStatus.last_heartbeat.is_null()
    intervals = [row[0] for row in tuples(
        AgentStatus.select(AgentStatus.heartbeat_interval_seconds).distinct())]
    parts: list[peewee.Expression] = []
    for interval in intervals:
        online_since = now - timedelta(seconds=ONLINE_FACTOR * max(1, interval))
        stale_since = now - timedelta(seconds=STALE_FACTOR * max(1, interval))
        same = AgentStatus.heartbeat_interval_seconds == interval
        if status == "online":
            parts.append(same & (AgentStatus.last_heartbeat >= online_since))
        elif status == "stale":
            parts.append(same & (AgentStatus.last_heartbeat < online_since)
                         & (AgentStatus.last_heartbeat >= stale_since))
        else:
            parts.append(same & (AgentStatus.last_heartbeat < stale_since))
    if not parts:
        return peewee.SQL("1 = 0")  # no agent has reported yet
    condition = parts[0]
    for part in parts[1:]:
        condition = condition | part
    return condition


def status_to_wire(row: AgentStatus | None, now: datetime) -> dict[str, Any]:
    if row is None:
        return {"status": "never", "agent_status": None}
    return {
        "status": derive_status(row.last_heartbeat, row.heartbeat_interval_seconds, now),
        "agent_status": {
            "agent_version": row.agent_version,
            "last_heartbeat": iso(row.last_heartbeat),
            "last_poll": iso(row.last_poll),
            "uptime_seconds": row.uptime_seconds,
            "scripts_total": row.scripts_total,
            "scripts_success": row.scripts_success,
            "scripts_failed": row.scripts_failed,
            "heartbeat_interval_seconds": row.heartbeat_interval_seconds,
            "system_info": row.system_info,
        },
    }


def to_wire(target: Target, group_names: list[str], status: AgentStatus | None,
            now: datetime) -> dict[str, Any]:
    return {
        "id": target.id,
        "hostname": target.hostname,
        "labels": target.labels,
        "groups": sorted(group_names),
        **status_to_wire(status, now),
        "created_at": iso(target.created_at),
        "updated_at": iso(target.updated_at),
    }


def get(target_id: int) -> Target:
    target = Target.get_or_none(Target.id == target_id)
    if target is None:
        raise NotFound(f"target {target_id} does not exist", details={"id": target_id})
    return target


def _group_names(target_ids: Iterable[int]) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    ids = list(target_ids)
    if not ids:
        return names
    rows = tuples(TargetGroup.select(TargetGroup.target, Group.name).join(Group)
                  .where(TargetGroup.target.in_(ids)))
    for target_id, name in rows:
        names.setdefault(target_id, []).append(name)
    return names


def _statuses(target_ids: Iterable[int]) -> dict[int, AgentStatus]:
    ids = list(target_ids)
    if not ids:
        return {}
    return {s.target_id: s for s in AgentStatus.select().where(AgentStatus.target.in_(ids))}


def read(target_id: int) -> dict[str, Any]:
    target = get(target_id)
    return to_wire(target, _group_names([target.id]).get(target.id, []),
                   _statuses([target.id]).get(target.id), utcnow())


def list_targets(*, hostname: str | None, group: str | None, status: str | None,
                 limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    now = utcnow()
    query = (Target.select(Target)
             .join(AgentStatus, peewee.JOIN.LEFT_OUTER,
                   on=(AgentStatus.target == Target.id))
             .order_by(Target.hostname))
    if hostname:
        query = query.where(Target.hostname.contains(hostname))
    if group:
        members = (TargetGroup.select(TargetGroup.target).join(Group)
                   .where(Group.name == group))
        query = query.where(Target.id.in_(members))
    if status:
        query = query.where(_status_condition(status, now))
    total = query.count()
    page = list(query.limit(limit).offset(offset))
    ids = [t.id for t in page]
    names, statuses = _group_names(ids), _statuses(ids)
    return [to_wire(t, names.get(t.id, []), statuses.get(t.id), now) for t in page], total


def _groups_by_name(names: list[str]) -> list[Group]:
    found = {g.name: g for g in Group.select().where(Group.name.in_(names))} if names else {}
    for index, name in enumerate(names):
        if name not in found:
            # A missing object named in a body is 422 everywhere (docs/api.md, "Errors").
            raise Unprocessable(f"body.groups[{index}]: group {name!r} does not exist",
                                code="UNKNOWN_GROUP",
                                details={"field": f"body.groups[{index}]", "name": name})
    return [found[name] for name in dict.fromkeys(names)]


def _set_groups(target: Target, names: list[str]) -> None:
    wanted = _groups_by_name(names)
    TargetGroup.delete().where(TargetGroup.target == target).execute()
    for group in wanted:
        TargetGroup.create(target=target, group=group)


def create(body: dict[str, Any]) -> dict[str, Any]:
    with write_transaction():
        if Target.select().where(Target.hostname == body["hostname"]).exists():
            raise Conflict(f"target {body['hostname']!r} already exists",
                           details={"field": "body.hostname"})
        target = Target.create(hostname=body["hostname"], labels=body.get("labels", {}))
        _set_groups(target, body.get("groups", []))
        revision.bump()
    return read(target.id)


def update(target_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    with write_transaction():
        target = get(target_id)
        if "labels" in changes:
            target.labels = changes["labels"]
        if "groups" in changes:
            _set_groups(target, changes["groups"])
        target.updated_at = utcnow()
        target.save()
        revision.bump()
    return read(target_id)


def add_to_group(target_id: int, group_id: int) -> dict[str, Any]:
    with write_transaction():
        target, group = get(target_id), group_service.get(group_id)
        exists = TargetGroup.select().where(TargetGroup.target == target,
                                            TargetGroup.group == group).exists()
        if not exists:
            TargetGroup.create(target=target, group=group)
            revision.bump()
    return read(target_id)


def remove_from_group(target_id: int, group_id: int) -> None:
    with write_transaction():
        target, group = get(target_id), group_service.get(group_id)
        removed = TargetGroup.delete().where(TargetGroup.target == target,
                                             TargetGroup.group == group).execute()
        if not removed:
            raise NotFound(f"target {target_id} is not in group {group_id}",
                           details={"id": target_id, "group_id": group_id})
        revision.bump()


def delete(target_id: int) -> None:
    with write_transaction():
        get(target_id).delete_instance(recursive=False)
        revision.bump()
        revision.bump_credentials()  # its agent tokens went with it
