"""Agent groups: which poll and heartbeat intervals an agent gets.

Pure functions over plain data. Each interval is decided on its own: the group
with the highest priority *that sets it* decides (ties: the older group, i.e. the
lower id), else the server default. So a high-priority group can set only the poll
interval while a lower one still decides the heartbeat interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupInfo:
    id: int
    name: str
    priority: int
    poll_interval_seconds: int | None = None
    heartbeat_interval_seconds: int | None = None


@dataclass(frozen=True)
class Intervals:
    poll_interval_seconds: int
    heartbeat_interval_seconds: int


def _ranked(groups: Iterable[GroupInfo]) -> list[GroupInfo]:
    return sorted(groups, key=lambda g: (-g.priority, g.id))


def effective_intervals(groups: Iterable[GroupInfo], *, default_poll: int,
                        default_heartbeat: int) -> Intervals:
    ranked = _ranked(groups)
    poll = next((g.poll_interval_seconds for g in ranked
                 if g.poll_interval_seconds is not None), default_poll)
    heartbeat = next((g.heartbeat_interval_seconds for g in ranked
                      if g.heartbeat_interval_seconds is not None), default_heartbeat)
    return Intervals(poll, heartbeat)


def group_names(groups: Iterable[GroupInfo]) -> list[str]:
    """The agent's groups, highest priority first (the order that decides)."""
    return [g.name for g in _ranked(groups)]
