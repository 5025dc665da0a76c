"""What one agent is assigned, built from a fleet-wide snapshot plus its own rows.

Building is split so that the expensive part is shared:

* `load_snapshot()` (database): every policy, group and script version's metadata
  (never script content), read once per configuration revision per process.
* `load_target_state(target_id)` (database): the target's group ids, its open
  force-run tokens and the rollout cohorts it is in; small indexed queries, run only
  on a cache miss.
* `build_view(...)` (pure): resolution (`server.resolution.resolve`), "latest"
  version lookup, parameter defaults from the signed schema, the wire body and its
  strong ETag. The ETag is a hash of the body, not of the revision, so every
  process computes the same ETag for the same assignments (agents may hop between
  processes behind a load balancer without re-downloading).

A policy whose script (or pinned version) is not stored yields no assignment: the
agent could not run it anyway, and the admin API reports the dangling reference.

A policy with a `rollout` block does not switch to a new version by itself: its
version comes from its latest rollout (`choose_version`, docs/rollouts.md). Every
rollout decision that changes who gets what bumps the configuration revision, so
views are rebuilt everywhere within a watcher period.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from aami.server.db import tuples
from aami.server.models import (
    ForceRun,
    ForceRunTarget,
    Group,
    Policy,
    Rollout,
    RolloutTarget,
    Script,
    TargetGroup,
)
from aami.server.resolution import PolicyRule, Scope, TargetContext, resolve
from aami.server.services import revision
from aami.server.services.agent_config import GroupInfo, Intervals, effective_intervals, group_names
from aami.server.timefmt import utcnow
from aami.trust.schema import schema_defaults


@dataclass(frozen=True)
class ScriptInfo:
    name: str
    version: str
    order: tuple[int, int, int]
    sha256: str
    envelope: Mapping[str, Any]
    defaults: Mapping[str, Any]
    timeout_seconds: int


@dataclass(frozen=True)
class RolloutInfo:
    """A policy's latest rollout, as assignments need it."""

    id: int
    from_version: str | None
    to_version: str
    state: str


# Rollout states in which the cohort has the new version and everyone else the old.
STAGED = ("running", "paused", "halted")


@dataclass(frozen=True)
class Snapshot:
    revision: int
    groups: Mapping[int, GroupInfo]
    rules: tuple[PolicyRule, ...]
    rules_by_id: Mapping[int, PolicyRule]
    # script name -> versions, highest first
    scripts: Mapping[str, tuple[ScriptInfo, ...]]
    # policy id -> its latest rollout (policies with a rollout block only)
    rollouts: Mapping[int, RolloutInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class ForceToken:
    token: str
    policy_id: int
    order: int  # the ForceRunTarget id: a newer request wins for the same script
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TargetState:
    group_ids: tuple[int, ...]
    forces: tuple[ForceToken, ...] = ()
    cohorts: frozenset[int] = frozenset()  # ids of staged rollouts this target is in


@dataclass(frozen=True)
class VersionChoice:
    script: ScriptInfo | None
    rollout_id: int | None = None
    in_cohort: bool | None = None
    note: str = ""


@dataclass(frozen=True)
class TargetView:
    """Everything the Agent API answers for one target, ready to send."""

    target_id: int
    hostname: str
    revision: int
    groups: tuple[str, ...]
    intervals: Intervals
    etag: str
    body: bytes  # the JSON of GET /agent/assignments, serialised once
    script_hashes: frozenset[str]
    policy_ids: frozenset[int]
    force_tokens: Mapping[str, int] = field(default_factory=dict)  # token -> policy id
    # The first force token's expiry: the cache must not serve the view after it.
    expires_at: datetime | None = None


def rule_from_row(row: Policy) -> PolicyRule:
    return PolicyRule(
        id=row.id, name=row.name, script_name=row.script_name, scope=Scope(row.scope),
        version=row.version, group_id=row.group_id, target_id=row.target_id,
        params=row.params or {}, schedule_mode=row.schedule_mode,
        interval_seconds=row.interval_seconds, timeout_seconds=row.timeout_seconds,
        run_as=row.run_as, priority=row.priority, enabled=row.enabled,
        rollout=row.rollout or None,
    )


def load_snapshot() -> Snapshot:
    # Read the revision first: data read afterwards is at least that new, so a
    # change racing with this load makes the snapshot look older, never newer.
    rev = revision.current()
    groups = {
        g.id: GroupInfo(g.id, g.name, g.priority, g.poll_interval_seconds,
                        g.heartbeat_interval_seconds)
        for g in Group.select()
    }
    rules = tuple(rule_from_row(p) for p in Policy.select().order_by(Policy.id))
    names = {r.script_name for r in rules}
    scripts: dict[str, list[ScriptInfo]] = {}
    if names:
        query = (Script.select(Script.name, Script.version, Script.version_major,
                               Script.version_minor, Script.version_patch, Script.sha256,
                               Script.envelope, Script.params_schema, Script.timeout_seconds)
                 .where(Script.name.in_(sorted(names))))
        for s in query:
            scripts.setdefault(s.name, []).append(ScriptInfo(
                s.name, s.version, (s.version_major, s.version_minor, s.version_patch),
                s.sha256, s.envelope, schema_defaults(s.params_schema or {}),
                s.timeout_seconds))
    ordered = {name: tuple(sorted(v, key=lambda i: i.order, reverse=True))
               for name, v in scripts.items()}
    return Snapshot(rev, groups, rules, {r.id: r for r in rules}, ordered,
                    _latest_rollouts([r.id for r in rules if r.rollout]))


def _latest_rollouts(policy_ids: list[int]) -> dict[int, RolloutInfo]:
    if not policy_ids:
        return {}
    latest = (Rollout.select(Rollout.policy, peewee.fn.MAX(Rollout.id))
              .where(Rollout.policy.in_(policy_ids)).group_by(Rollout.policy))
    ids = [row[1] for row in tuples(latest)]
    rows = Rollout.select(Rollout.id, Rollout.policy, Rollout.from_version,
                          Rollout.to_version, Rollout.state).where(Rollout.id.in_(ids or [0]))
    return {r.policy_id: RolloutInfo(r.id, r.from_version, r.to_version, r.state)
            for r in rows}


def load_target_state(target_id: int) -> TargetState:
    group_ids = tuple(sorted(
        row.group_id for row in
        TargetGroup.select(TargetGroup.group).where(TargetGroup.target == target_id)))
    forces = tuple(
        ForceToken(row.force_run.token, row.force_run.policy_id, row.id,
                   row.force_run.expires_at)
        for row in ForceRunTarget.select(ForceRunTarget.id, ForceRun.token, ForceRun.policy,
                                         ForceRun.expires_at)
        .join(ForceRun)
        .where(ForceRunTarget.target == target_id,
               ForceRunTarget.status.in_(("pending", "delivered")),
               ForceRun.expires_at.is_null() | (ForceRun.expires_at > utcnow()))
    )
    cohorts = frozenset(
        row.rollout_id for row in RolloutTarget.select(RolloutTarget.rollout)
        .join(Rollout).where(RolloutTarget.target == target_id, Rollout.state.in_(STAGED)))
    return TargetState(group_ids, forces, cohorts)


def pick_version(snapshot: Snapshot, name: str, version: str) -> ScriptInfo | None:
    versions = snapshot.scripts.get(name, ())
    if version == "latest":
        return versions[0] if versions else None
    return next((v for v in versions if v.version == version), None)


def choose_version(snapshot: Snapshot, rule: PolicyRule, target_id: int,
                   state: TargetState) -> VersionChoice:
    """The version this target gets for `rule`, rollouts considered."""
    rollout = snapshot.rollouts.get(rule.id) if rule.rollout else None
    if rollout is None:
        return VersionChoice(pick_version(snapshot, rule.script_name, rule.version))
    if rollout.state in STAGED:
        inside = rollout.id in state.cohorts
        version = rollout.to_version if inside else rollout.from_version
        note = (f"rollout {rollout.id} {rollout.state}: "
                + ("in the cohort, new version" if inside else "not in the cohort, old version"))
    elif rollout.state == "completed":
        version, inside, note = rollout.to_version, None, f"rollout {rollout.id} completed"
    else:  # rolled_back, aborted: everyone stays on (or returns to) the old version
        version, inside = rollout.from_version or rollout.to_version, None
        note = f"rollout {rollout.id} {rollout.state}: old version"
    script = pick_version(snapshot, rule.script_name, version or "latest")
    return VersionChoice(script, rollout.id, inside, note)


def target_context(snapshot: Snapshot, target_id: int, group_ids: tuple[int, ...]
                   ) -> TargetContext:
    return TargetContext(target_id, {g: snapshot.groups[g].priority
                                     for g in group_ids if g in snapshot.groups})


def _force_by_script(snapshot: Snapshot, forces: tuple[ForceToken, ...]) -> dict[str, ForceToken]:
    chosen: dict[str, ForceToken] = {}
    for force in sorted(forces, key=lambda f: f.order):
        rule = snapshot.rules_by_id.get(force.policy_id)
        if rule is not None:
            chosen[rule.script_name] = force  # newest request last, so it wins
    return chosen


def _assignment_wire(rule: PolicyRule, script: ScriptInfo, params: dict[str, Any],
                     force: ForceToken | None) -> dict[str, Any]:
    return {
        "policy_id": rule.id,
        "policy_name": rule.name,
        "script": {"name": script.name, "version": script.version, "sha256": script.sha256,
                   "envelope": script.envelope},
        "params": params,
        "schedule": {"mode": rule.schedule_mode,
                     "interval_seconds": rule.interval_seconds
                     if rule.schedule_mode == "interval" else None},
        "timeout_seconds": rule.timeout_seconds or script.timeout_seconds,
        "run_as": rule.run_as,
        "force_token": force.token if force else None,
    }


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def build_view(snapshot: Snapshot, target_id: int, hostname: str, state: TargetState, *,
               default_poll: int, default_heartbeat: int) -> TargetView:
    context = target_context(snapshot, target_id, state.group_ids)
    winners = resolve(context, snapshot.rules)
    forces = _force_by_script(snapshot, state.forces)
    items = []
    for assignment in winners:
        rule = assignment.policy
        script = choose_version(snapshot, rule, target_id, state).script
        if script is None:
            continue
        # Same merge as resolve(..., script_defaults): defaults first, policies over them.
        params = {**script.defaults, **assignment.params}
        items.append(_assignment_wire(rule, script, params, forces.get(rule.script_name)))
    etag = hashlib.sha256(canonical(items)).hexdigest()[:40]
    expiries = [f.expires_at for f in forces.values() if f.expires_at is not None]
    groups = [snapshot.groups[g] for g in state.group_ids if g in snapshot.groups]
    return TargetView(
        target_id=target_id, hostname=hostname, revision=snapshot.revision,
        groups=tuple(group_names(groups)),
        intervals=effective_intervals(groups, default_poll=default_poll,
                                      default_heartbeat=default_heartbeat),
        etag=etag,
        body=canonical({"etag": etag, "assignments": items}),
        script_hashes=frozenset(i["script"]["sha256"] for i in items),
        policy_ids=frozenset(i["policy_id"] for i in items),
        force_tokens={i["force_token"]: i["policy_id"] for i in items if i["force_token"]},
        expires_at=min(expiries) if expiries else None,
    )


def load_script_content(sha256: str) -> bytes | None:
    row = Script.select(Script.content).where(Script.sha256 == sha256).first()
    return bytes(row.content) if row is not None else None
