"""Explain: why a target runs what it runs (`GET /api/v1/targets/{id}/explain`).

For each policy key (the script name: one effective assignment per script), every
candidate is listed with the reason it won or lost, in the order the resolver
ranks them (server/resolution.py): scope (target > group > global), then the
group's priority among the target's groups, then the policy priority, then the
older policy. Disabled policies, and group policies on groups the target is not in,
are listed as not applicable. The chosen policy's version is given as requested
(a pin or `latest`) and as resolved, with the rollout and cohort behind it
(services/rollouts.py), then the merged parameters and the schedule, exactly as
the Agent API would answer them (services/assignments.py builds both).
"""

from __future__ import annotations

from typing import Any

from aami.server.errors import NotFound
from aami.server.models import Target
from aami.server.resolution import PolicyRule, Scope, TargetContext, applies_to, precedence
from aami.server.services import assignments
from aami.server.services.assignments import Snapshot, TargetState


def _candidate(rule: PolicyRule, snapshot: Snapshot, outcome: str) -> dict[str, Any]:
    group = snapshot.groups.get(rule.group_id) if rule.group_id is not None else None
    return {"policy_id": rule.id, "name": rule.name, "scope": rule.scope.value,
            "group": group.name if group is not None else None,
            "group_priority": group.priority if group is not None else None,
            "priority": rule.priority, "enabled": rule.enabled, "outcome": outcome}


def _relevant(rule: PolicyRule, target_id: int) -> bool:
    """Target policies for other targets are not candidates here; everything else is."""
    return rule.scope is not Scope.TARGET or rule.target_id == target_id


def _why_lost(loser: PolicyRule, winner: PolicyRule, context: TargetContext,
              snapshot: Snapshot) -> str:
    mine, best = precedence(loser, context), precedence(winner, context)
    against = f"policy {winner.name!r}"
    if mine[0] != best[0]:
        return (f"lost: {against} has the more specific scope "
                f"({winner.scope.value} > {loser.scope.value})")
    if mine[1] != best[1]:
        return (f"lost: {against} is on a group of higher priority "
                f"({best[1]} > {mine[1]})")
    if mine[2] != best[2]:
        return f"lost: {against} has the higher policy priority ({best[2]} > {mine[2]})"
    return f"lost: same precedence; {against} is older (lower id) and wins the tie"


def _not_applicable(rule: PolicyRule, snapshot: Snapshot) -> str:
    if not rule.enabled:
        return "not applicable: disabled"
    group = snapshot.groups.get(rule.group_id) if rule.group_id is not None else None
    name = group.name if group is not None else str(rule.group_id)
    return f"not applicable: the target is not in group {name}"


def _key(script_name: str, rules: list[PolicyRule], context: TargetContext,
         snapshot: Snapshot, state: TargetState) -> dict[str, Any]:
    live = sorted((r for r in rules if applies_to(r, context)),
                  key=lambda r: precedence(r, context), reverse=True)
    winner = live[0] if live else None
    considered = []
    for rule in live:
        assert winner is not None
        outcome = ("won: " + ("the only candidate" if len(live) == 1 else
                              "highest precedence (scope, group priority, priority, age)")
                   if rule is winner else _why_lost(rule, winner, context, snapshot))
        considered.append(_candidate(rule, snapshot, outcome))
    considered += [_candidate(r, snapshot, _not_applicable(r, snapshot))
                   for r in rules if not applies_to(r, context)]
    entry: dict[str, Any] = {"key": script_name, "chosen": None, "considered": considered,
                             "version": None, "params": None, "schedule": None}
    if winner is None:
        return entry
    choice = assignments.choose_version(snapshot, winner, context.target_id, state)
    params: dict[str, Any] = dict(choice.script.defaults) if choice.script else {}
    for rule in reversed(live):  # least specific first, as resolve() merges
        params.update(rule.params)
    entry.update({
        "chosen": _candidate(winner, snapshot, considered[0]["outcome"]),
        "version": {"requested": winner.version,
                    "resolved": choice.script.version if choice.script else None,
                    "rollout_id": choice.rollout_id, "in_cohort": choice.in_cohort,
                    "note": choice.note},
        "params": params,
        "schedule": {"mode": winner.schedule_mode,
                     "interval_seconds": winner.interval_seconds
                     if winner.schedule_mode == "interval" else None,
                     "timeout_seconds": winner.timeout_seconds or (
                         choice.script.timeout_seconds if choice.script else None),
                     "run_as": winner.run_as},
    })
    return entry


def explain(target_id: int) -> dict[str, Any]:
    target = Target.get_or_none(Target.id == target_id)
    if target is None:
        raise NotFound(f"target {target_id} does not exist", details={"id": target_id})
    snapshot = assignments.load_snapshot()
    state = assignments.load_target_state(target_id)
    context = assignments.target_context(snapshot, target_id, state.group_ids)
    by_key: dict[str, list[PolicyRule]] = {}
    for rule in snapshot.rules:
        if _relevant(rule, target_id):
            by_key.setdefault(rule.script_name, []).append(rule)
    # Keys with at least one candidate that could apply to this target.
    keys = [k for k, rules in sorted(by_key.items())
            if any(r.scope is not Scope.GROUP or r.group_id in context.group_priorities
                   for r in rules)]
    groups = [snapshot.groups[g] for g in state.group_ids if g in snapshot.groups]
    return {
        "target": {"id": target.id, "hostname": target.hostname,
                   "groups": [{"id": g.id, "name": g.name, "priority": g.priority}
                              for g in groups]},
        "policies": [_key(k, by_key[k], context, snapshot, state) for k in keys],
    }
