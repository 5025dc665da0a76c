"""Groups: named sets of targets with a priority and optional agent intervals."""

from __future__ import annotations

from typing import Any

import peewee

from aami.server.db import tuples, write_transaction
from aami.server.errors import Conflict, NotFound
from aami.server.models import Group, TargetGroup
from aami.server.services import revision
from aami.server.timefmt import iso, utcnow


def to_wire(group: Group, *, target_count: int | None = None) -> dict[str, Any]:
    data = {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "priority": group.priority,
        "poll_interval_seconds": group.poll_interval_seconds,
        "heartbeat_interval_seconds": group.heartbeat_interval_seconds,
        "created_at": iso(group.created_at),
        "updated_at": iso(group.updated_at),
    }
    if target_count is not None:
        data["target_count"] = target_count
    return data


def get(group_id: int) -> Group:
    group = Group.get_or_none(Group.id == group_id)
    if group is None:
        raise NotFound(f"group {group_id} does not exist", details={"id": group_id})
    return group


def by_name(name: str) -> Group:
    group = Group.get_or_none(Group.name == name)
    if group is None:
        raise NotFound(f"group {name!r} does not exist", details={"name": name})
    return group


def list_groups(*, name: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    query = Group.select().order_by(Group.priority.desc(), Group.name)
    if name:
        query = query.where(Group.name.contains(name))
    total = query.count()
    counts: dict[int, int] = dict(tuples(
        TargetGroup.select(TargetGroup.group, peewee.fn.COUNT(TargetGroup.id))
        .group_by(TargetGroup.group)))
    rows = [to_wire(g, target_count=counts.get(g.id, 0)) for g in query.limit(limit).offset(offset)]
    return rows, total


def create(body: dict[str, Any]) -> dict[str, Any]:
    with write_transaction():
        if Group.select().where(Group.name == body["name"]).exists():
            raise Conflict(f"group {body['name']!r} already exists", details={"field": "name"})
        group = Group.create(**body)
        revision.bump()
    return to_wire(group, target_count=0)


def update(group_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    with write_transaction():
        group = get(group_id)
        if "name" in changes and changes["name"] != group.name and Group.select().where(
            Group.name == changes["name"]
        ).exists():
            raise Conflict(f"group {changes['name']!r} already exists", details={"field": "name"})
        for key, value in changes.items():
            setattr(group, key, value)
        group.updated_at = utcnow()
        group.save()
        revision.bump()
    return to_wire(group)


def delete(group_id: int) -> None:
    with write_transaction():
        get(group_id).delete_instance()
        revision.bump()
