"""Scope resolution: which policies a target gets, and with which parameters.

Pure functions over plain data (no database, no I/O), so every rule has a test.

Rules (docs/architecture.md section 3):

* A policy applies at `global`, `group` or `target` scope. It applies to a target
  when it is global, names one of the target's groups, or names the target.
  Disabled policies are ignored, as if they did not exist.
* Policies are keyed by the script they run: for one script name a target gets
  one effective assignment. The most specific scope wins (target > group >
  global); among group policies, the one on the group with the higher group
  priority wins. Remaining ties go to the higher policy `priority`, then to the
  lower policy id (the older policy), so the outcome never depends on row order.
* Parameters merge by top-level key: script defaults ← global ← group (lower group
  priority first, so higher priority overrides) ← target. Every applicable policy
  for the script contributes its parameters in that order, and the winner's own
  parameters are applied last within its scope.
* Everything else (version pin, schedule, timeout, run_as) comes from the winner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Scope(Enum):
    GLOBAL = "global"
    GROUP = "group"
    TARGET = "target"


_SCOPE_RANK = {Scope.GLOBAL: 0, Scope.GROUP: 1, Scope.TARGET: 2}


@dataclass(frozen=True)
class PolicyRule:
    """One stored policy, as plain data."""

    id: int
    name: str
    script_name: str
    scope: Scope
    version: str = "latest"
    group_id: int | None = None
    target_id: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule_mode: str = "interval"
    interval_seconds: int | None = None
    timeout_seconds: int | None = None
    run_as: str | None = None
    priority: int = 0
    enabled: bool = True
    # The policy's staged-rollout settings, or None (services/rollouts.py).
    rollout: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TargetContext:
    target_id: int
    # group id -> group priority, for every group the target belongs to
    group_priorities: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    policy: PolicyRule
    params: dict[str, Any]


def applies_to(policy: PolicyRule, target: TargetContext) -> bool:
    if not policy.enabled:
        return False
    if policy.scope is Scope.GLOBAL:
        return True
    if policy.scope is Scope.GROUP:
        return policy.group_id in target.group_priorities
    return policy.target_id == target.target_id


def precedence(policy: PolicyRule, target: TargetContext) -> tuple[int, int, int, int]:
    """Sort key: larger wins. (scope, group priority, policy priority, -id)."""
    group_priority = (
        target.group_priorities.get(policy.group_id, 0)
        if policy.scope is Scope.GROUP and policy.group_id is not None
        else 0
    )
    return (_SCOPE_RANK[policy.scope], group_priority, policy.priority, -policy.id)


def resolve(
    target: TargetContext,
    policies: Iterable[PolicyRule],
    script_defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Assignment]:
    """The target's effective assignments, one per script name, sorted by name.

    `script_defaults` maps a script name to the defaults from its signed parameter
    schema (the version the winner resolves to; the caller knows which that is).
    """
    by_script: dict[str, list[PolicyRule]] = {}
    for policy in policies:
        if applies_to(policy, target):
            by_script.setdefault(policy.script_name, []).append(policy)
    defaults = script_defaults or {}
    assignments = []
    for script_name in sorted(by_script):
        ranked = sorted(by_script[script_name], key=lambda p: precedence(p, target))
        params: dict[str, Any] = dict(defaults.get(script_name, {}))
        for policy in ranked:  # least specific first, so later ones override
            params.update(policy.params)
        assignments.append(Assignment(policy=ranked[-1], params=params))
    return assignments
