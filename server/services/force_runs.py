"""Force-run: an operator asks for an immediate run of a policy on a target or group.

A request is a `ForceRun` with a fresh token and one `ForceRunTarget` row per
target it reaches. A target is reached when the policy applies to it (scope rules
of `server.resolution.applies_to`); the token then rides on that target's
assignment for the policy's script (the effective assignment, which may be a more
specific policy for the same script: the operator asked for the script to run now,
with the parameters that target really uses). Agents run a force token at most
once; the execution they report carries it and completes the target's row.

Per-target states: `pending` (not yet handed out), `delivered` (an assignment carrying
the token was served to the agent), `done` / `failed` (its execution arrived, by its
outcome), `expired` (the request's `expires_at` passed first: agents stop receiving
the token, default one hour after the request) and `cancelled` (an operator
cancelled the request while the row was still pending or delivered). An agent that
already holds a delivered token may still run it after a cancel; the report then
lands as an ordinary execution.

A group request is fanned out by a background job in chunks (a group may hold
20,000 targets; one transaction per chunk keeps locks short), with progress.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import peewee

from aami.server.db import tuples, write_transaction
from aami.server.errors import Conflict, NotFound, Unprocessable
from aami.server.models import ForceRun, ForceRunTarget, Group, Job, Policy, Target, TargetGroup
from aami.server.resolution import PolicyRule, TargetContext, applies_to
from aami.server.services import jobs, revision
from aami.server.services.assignments import rule_from_row
from aami.server.timefmt import iso, utcnow

FAN_OUT_CHUNK = 500
DEFAULT_EXPIRES_SECONDS = 3600
OPEN_STATES = ("pending", "delivered")  # the token still rides on assignments
STATES = ("pending", "delivered", "done", "failed", "expired", "cancelled")


def _policy(policy_id: int) -> Policy:
    policy = Policy.get_or_none(Policy.id == policy_id)
    if policy is None:
        # A missing object named in a body is 422 everywhere (docs/api.md, "Errors").
        raise Unprocessable(f"body.policy_id: policy {policy_id} does not exist",
                            code="UNKNOWN_POLICY",
                            details={"field": "body.policy_id", "policy_id": policy_id})
    if not policy.enabled:
        raise Unprocessable(f"policy {policy.name!r} is disabled",
                            details={"field": "body.policy_id", "policy_id": policy_id})
    return policy


def _contexts(target_ids: list[int]) -> dict[int, TargetContext]:
    groups: dict[int, dict[int, int]] = {t: {} for t in target_ids}
    rows = tuples(TargetGroup.select(TargetGroup.target, TargetGroup.group, Group.priority)
                  .join(Group).where(TargetGroup.target.in_(target_ids)))
    for target_id, group_id, priority in rows:
        groups[target_id][group_id] = priority
    return {t: TargetContext(t, g) for t, g in groups.items()}


def _new_force_run(policy: Policy, requested_by: str, expires_in: int, **scope: Any
                   ) -> ForceRun:
    now = utcnow()
    return ForceRun.create(policy=policy.id, token="fr_" + secrets.token_hex(16),
                           requested_by=requested_by[:128], created_at=now,
                           expires_at=now + timedelta(seconds=expires_in), **scope)


def request_target(policy_id: int, target_id: int, requested_by: str,
                   expires_in: int = DEFAULT_EXPIRES_SECONDS) -> dict[str, Any]:
    with write_transaction():
        target = Target.get_or_none(Target.id == target_id)
        if target is None:
            raise NotFound(f"target {target_id} does not exist", details={"id": target_id})
        policy = _policy(policy_id)
        if not applies_to(rule_from_row(policy), _contexts([target_id])[target_id]):
            raise Unprocessable(
                f"policy {policy.name!r} does not apply to target {target.hostname!r}",
                details={"field": "body.policy_id", "policy_id": policy_id})
        force_run = _new_force_run(policy, requested_by, expires_in, target=target_id)
        ForceRunTarget.create(force_run=force_run.id, target=target_id)
    return {"id": force_run.id, "token": force_run.token, "status": "pending", "targets": 1,
            "expires_at": iso(force_run.expires_at)}


def request_group(policy_id: int, group_id: int, requested_by: str,
                  expires_in: int = DEFAULT_EXPIRES_SECONDS) -> dict[str, Any]:
    """Create the request and its fan-out job; the caller runs `fan_out_chunk`."""
    with write_transaction():
        group = Group.get_or_none(Group.id == group_id)
        if group is None:
            raise NotFound(f"group {group_id} does not exist", details={"id": group_id})
        policy = _policy(policy_id)
        members = TargetGroup.select().where(TargetGroup.group == group_id).count()
        force_run = _new_force_run(policy, requested_by, expires_in, group=group_id)
        job_id = jobs.create("force_run", total=members,
                             detail={"force_run_id": force_run.id, "group_id": group_id,
                                     "policy_id": policy_id, "targets": 0, "skipped": 0})
    return {"id": force_run.id, "token": force_run.token, "status": "pending",
            "targets": members, "job_id": job_id, "expires_at": iso(force_run.expires_at)}


def fan_out_chunk(force_run_id: int, after_target: int, limit: int = FAN_OUT_CHUNK
                  ) -> tuple[int, int, int, int]:
    """Add the next chunk of members; returns (last target id, scanned, added, skipped)."""
    force_run = ForceRun.get_by_id(force_run_id)
    rule: PolicyRule = rule_from_row(force_run.policy)
    with write_transaction():
        members = [row[0] for row in tuples(
            TargetGroup.select(TargetGroup.target)
            .where(TargetGroup.group == force_run.group_id, TargetGroup.target > after_target)
            .order_by(TargetGroup.target).limit(limit))]
        if not members:
            return after_target, 0, 0, 0
        contexts = _contexts(members)
        reached = [t for t in members if applies_to(rule, contexts[t])]
        if reached:
            ForceRunTarget.insert_many(
                [{"force_run": force_run_id, "target": t, "updated_at": utcnow()}
                 for t in reached]).on_conflict_ignore().execute()
    return members[-1], len(members), len(reached), len(members) - len(reached)


def mark_done(target_id: int, token: str, execution_id: str, success: bool) -> int:
    """Complete the caller's own share of the request with this token (if still open;
    a run that raced with expiry or a cancel still counts: it did happen)."""
    force_run = ForceRun.select(ForceRun.id).where(ForceRun.token == token).first()
    if force_run is None:
        return 0
    return int(ForceRunTarget.update(status="done" if success else "failed",
                                     execution_id=execution_id, updated_at=utcnow())
               .where(ForceRunTarget.force_run == force_run.id,
                      ForceRunTarget.target == target_id,
                      ForceRunTarget.status.in_([*OPEN_STATES, "expired", "cancelled"]))
               .execute())


def mark_delivered(target_id: int, tokens: list[str]) -> int:
    """The agent was just served an assignment carrying these tokens."""
    ids = ForceRun.select(ForceRun.id).where(ForceRun.token.in_(tokens))
    return int(ForceRunTarget.update(status="delivered", updated_at=utcnow())
               .where(ForceRunTarget.target == target_id, ForceRunTarget.force_run.in_(ids),
                      ForceRunTarget.status == "pending").execute())


def cancel(force_run_id: int) -> dict[str, Any]:
    """Cancel what has not run yet; a finished request is a conflict."""
    with write_transaction():
        force_run = ForceRun.get_or_none(ForceRun.id == force_run_id)
        if force_run is None:
            raise NotFound(f"force-run {force_run_id} does not exist",
                           details={"id": force_run_id})
        now = utcnow()
        if _expired(force_run, now):
            raise Conflict(f"force-run {force_run_id} has already expired",
                           details={"id": force_run_id})
        cancelled = (ForceRunTarget.update(status="cancelled", updated_at=now)
                     .where(ForceRunTarget.force_run == force_run_id,
                            ForceRunTarget.status.in_(OPEN_STATES)).execute())
        if force_run.cancelled_at is None:
            force_run.cancelled_at = now
            force_run.save()
        # Every process drops its cached assignments (cancels are rare; one bump).
        revision.bump()
    return {**status(force_run_id, limit=0), "cancelled_targets": int(cancelled)}


def _expired(force_run: ForceRun, now: datetime) -> bool:
    return force_run.expires_at is not None and force_run.expires_at <= now


def _effective(state: str, force_run: ForceRun, now: datetime) -> str:
    """Expiry is decided by the clock, not by a sweeper: an open row past it is expired."""
    return "expired" if state in OPEN_STATES and _expired(force_run, now) else state


def _job_for(force_run: ForceRun) -> Job | None:
    if force_run.group_id is None:
        return None
    window = timedelta(seconds=5)
    candidates = Job.select().where(Job.kind == "force_run",
                                    Job.created_at.between(force_run.created_at - window,
                                                           force_run.created_at + window))
    return next((j for j in candidates if (j.detail or {}).get("force_run_id") == force_run.id),
                None)


def status(force_run_id: int, *, limit: int = 500) -> dict[str, Any]:
    force_run = ForceRun.get_or_none(ForceRun.id == force_run_id)
    if force_run is None:
        raise NotFound(f"force-run {force_run_id} does not exist", details={"id": force_run_id})
    now = utcnow()
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    for state, count in tuples(
            ForceRunTarget.select(ForceRunTarget.status, peewee.fn.COUNT(ForceRunTarget.id))
            .where(ForceRunTarget.force_run == force_run_id).group_by(ForceRunTarget.status)):
        counts[_effective(state, force_run, now)] += count
    rows = tuples(ForceRunTarget.select(ForceRunTarget.target, Target.hostname,
                                        ForceRunTarget.status, ForceRunTarget.execution_id,
                                        ForceRunTarget.updated_at)
                  .join(Target).where(ForceRunTarget.force_run == force_run_id)
                  .order_by(ForceRunTarget.target).limit(limit))
    job = _job_for(force_run)
    fanning_out = job is not None and job.status in ("queued", "running")
    open_rows = counts["pending"] + counts["delivered"]
    if force_run.cancelled_at is not None:
        overall = "cancelled"
    elif _expired(force_run, now):
        overall = "expired"
    else:
        overall = "pending" if open_rows or fanning_out else "done"
    return {
        "id": force_run.id, "token": force_run.token, "policy_id": force_run.policy_id,
        "target_id": force_run.target_id, "group_id": force_run.group_id,
        "requested_by": force_run.requested_by, "created_at": iso(force_run.created_at),
        "expires_at": iso(force_run.expires_at) if force_run.expires_at else None,
        "cancelled_at": iso(force_run.cancelled_at) if force_run.cancelled_at else None,
        "status": overall,
        "targets": sum(counts.values()),
        "counts": counts,
        "job": jobs.to_wire(job) if job is not None else None,
        "results": [{"target_id": target, "hostname": hostname,
                     "status": _effective(state, force_run, now),
                     "execution_id": execution_id, "updated_at": iso(updated)}
                    for target, hostname, state, execution_id, updated in rows],
    }
