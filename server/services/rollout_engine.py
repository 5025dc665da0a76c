"""The decisions a staged rollout takes by itself (docs/rollouts.md), once a second.

`tick()` runs in every server process, but under one lock (PostgreSQL: a
transaction-scoped advisory lock, tried without waiting, so one process decides
and the others skip that second; SQLite: the database write lock), and each
decision re-reads the rows it changes inside that transaction. So a decision is
taken once, whichever process takes it, and a restarted server simply continues
from the rows: a rollout has no state outside the database.

Per policy with a `rollout` block, each tick:

1. No rollout yet: the version it resolves to today becomes its baseline (a
   `completed` rollout with no `from_version`): there is nothing to stage from.
2. The latest rollout is over and the policy now resolves to another version (a
   `latest` policy seeing a newer upload, an edited pin): a new rollout starts from
   the baseline, with the first step's cohort. A version that was halted, rolled
   back or aborted is not retried by itself (publish a fixed version, or promote).
3. A running or paused rollout is judged: its cohort's runs of the new version are
   counted as they are stored (`count_runs`, called by services/execution_ingest.py in
   the transaction that stores them, so judging reads counters, never scans the
   executions), and `failure_ratio = failed / max(runs, cohort x min_runs)`
   (so a cohort of 100 is not stopped by its first failed run when the limit is 10 %,
   but 11 failed runs stop it at once, without waiting for the other 89). Above
   `max_failure_ratio` it halts (or rolls back): within one tick of the report that
   crossed the threshold. A running rollout advances when the step's wait has passed
   and every cohort target has reported `min_runs` runs; after the last step
   (100 %) it is completed.

Cohorts: the policy's targets ordered by SHA-256 of "rollout id:target id", a
stable order that differs between rollouts (the same nodes are not always first);
a step adds targets from that order up to ceil(percent x targets / 100), and a
target once added stays (`rollout_target` rows), so it keeps the new version as the
rollout advances, even if the fleet grows.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aami.server.db import is_postgres, tuples, write_transaction
from aami.server.models import (
    Policy,
    Rollout,
    RolloutTarget,
    Script,
    Target,
    TargetGroup,
    database_proxy,
)
from aami.server.services import audit, revision
from aami.server.timefmt import utcnow

log = logging.getLogger(__name__)

_LOCK_KEY = 0x4A4D_4933  # "the AAMI rollout lock" among advisory locks
STAGED = ("running", "paused", "halted")
STOPPED = ("halted", "rolled_back", "aborted")


def lock(*, wait: bool) -> bool:
    """Inside a write transaction: take the rollout lock (False: another holds it)."""
    database = database_proxy.obj
    if not is_postgres(database):
        return True  # write_transaction() already holds SQLite's write lock
    if wait:
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        return True
    row = database.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()
    return bool(row[0])


def cohort_size(row: Rollout) -> int:
    return int(RolloutTarget.select().where(RolloutTarget.rollout == row.id).count())


def targets_on_new(row: Rollout) -> int:
    if row.state in STAGED:
        return cohort_size(row)
    return row.targets_total if row.state == "completed" else 0


def failure_ratio(ok: int, failed: int, cohort: int, min_runs: int) -> float | None:
    denominator = max(ok + failed, cohort * min_runs)
    return None if denominator == 0 else round(failed / denominator, 4)


def _eligible(policy: Policy) -> list[int]:
    """The policy's targets: everyone it applies to (docs/rollouts.md)."""
    if policy.scope == "global":
        return [r[0] for r in tuples(Target.select(Target.id))]
    if policy.scope == "group":
        return [r[0] for r in tuples(TargetGroup.select(TargetGroup.target)
                                     .where(TargetGroup.group == policy.group_id))]
    return [policy.target_id] if policy.target_id is not None else []


def _order(rollout_id: int, target_id: int) -> str:
    return hashlib.sha256(f"{rollout_id}:{target_id}".encode()).hexdigest()


def grow_cohort(row: Rollout, policy: Policy) -> int:
    """Add targets up to the current step's share; returns how many were added."""
    eligible = sorted(_eligible(policy), key=lambda t: _order(row.id, t))
    row.targets_total = len(eligible)
    wanted = math.ceil(list(row.steps)[row.step] * len(eligible) / 100)
    have = {r[0] for r in tuples(RolloutTarget.select(RolloutTarget.target)
                                 .where(RolloutTarget.rollout == row.id))}
    missing = max(0, wanted - len(have))
    new = [t for t in eligible if t not in have][:missing]
    if new:
        RolloutTarget.insert_many([{"rollout": row.id, "target": t, "step": row.step}
                                   for t in new]).on_conflict_ignore().execute()
    return len(new)


def desired_version(policy: Policy) -> str | None:
    """The version the policy resolves to without any rollout."""
    query = Script.select(Script.version).where(Script.name == policy.script_name)
    if policy.version != "latest":
        query = query.where(Script.version == policy.version)
    row = query.order_by(Script.version_major.desc(), Script.version_minor.desc(),
                         Script.version_patch.desc()).first()
    return row.version if row is not None else None


def _start(policy: Policy, config: dict[str, Any], from_version: str | None,
           to_version: str) -> Rollout:
    now = utcnow()
    first = from_version is None
    row = Rollout.create(
        policy=policy.id, script_name=policy.script_name, from_version=from_version,
        to_version=to_version, state="completed" if first else "running",
        step=len(config["steps"]) - 1 if first else 0, steps=config["steps"],
        wait_seconds=config["wait_seconds"], min_runs=config["min_runs"],
        max_failure_ratio=config["max_failure_ratio"], on_failure=config["on_failure"],
        reason="first version: nothing to stage from" if first
        else f"new version {to_version} (was {from_version})",
        step_started_at=now, started_at=now, updated_at=now)
    if first:
        row.targets_total = len(_eligible(policy))
    else:
        grow_cohort(row, policy)
    row.save()
    return row


def count_runs(rows: Sequence[Mapping[str, Any]]) -> int:
    """Inside the transaction storing new executions: add the runs of an active
    rollout's new version by its cohort to the counters. Returns the runs counted."""
    policies = {r["script_policy"] for r in rows if r.get("script_policy")}
    if not policies:
        return 0
    active = list(Rollout.select(Rollout.id, Rollout.policy, Rollout.to_version)
                  .where(Rollout.state.in_(("running", "paused")),
                         Rollout.policy.in_(sorted(policies))))
    counted = 0
    for rollout in active:
        per_target: dict[int, list[int]] = {}
        wanted = (rollout.policy_id, rollout.to_version)
        for r in rows:
            if (r["script_policy"], r["script_version"]) == wanted:
                per_target.setdefault(r["target"], [0, 0])[0 if r["success"] else 1] += 1
        cohort = {t for (t,) in tuples(RolloutTarget.select(RolloutTarget.target).where(
            RolloutTarget.rollout == rollout.id, RolloutTarget.target.in_(sorted(per_target))))
        } if per_target else set()
        for target in sorted(cohort):  # a stable order: concurrent writers lock alike
            ok, failed = per_target[target]
            RolloutTarget.update(runs_ok=RolloutTarget.runs_ok + ok,
                                 runs_failed=RolloutTarget.runs_failed + failed).where(
                RolloutTarget.rollout == rollout.id, RolloutTarget.target == target).execute()
        ok = sum(per_target[t][0] for t in cohort)
        failed = sum(per_target[t][1] for t in cohort)
        if ok or failed:
            Rollout.update(runs_ok=Rollout.runs_ok + ok,
                           runs_failed=Rollout.runs_failed + failed).where(
                Rollout.id == rollout.id).execute()
            counted += ok + failed
    return counted


# What a decision writes; the run counters belong to `count_runs` alone.
DECISION_FIELDS = ("state", "reason", "step", "step_started_at", "targets_total",
                   "updated_at")


def save_decision(row: Rollout) -> None:
    row.save(only=[getattr(Rollout, f) for f in DECISION_FIELDS])


@dataclass
class Event:
    rollout_id: int
    what: str


def _judge(row: Rollout, policy: Policy) -> Event | None:
    now = utcnow()
    ok, failed = row.runs_ok, row.runs_failed
    size = cohort_size(row)
    ratio = failure_ratio(ok, failed, size, row.min_runs)
    percent = list(row.steps)[row.step]
    if failed and ratio is not None and ratio > row.max_failure_ratio:
        row.state = "halted" if row.on_failure == "halt" else "rolled_back"
        row.reason = (f"{failed} failed of {ok + failed} runs at step {row.step} "
                      f"({percent} %): failure ratio {ratio:.2f} > {row.max_failure_ratio:.2f}")
        row.updated_at = now
        save_decision(row)
        return Event(row.id, row.state)
    judged = (RolloutTarget.select().where(
        RolloutTarget.rollout == row.id,
        RolloutTarget.runs_ok + RolloutTarget.runs_failed >= row.min_runs).count())
    waited = (now - row.step_started_at).total_seconds() >= row.wait_seconds
    if row.state == "running" and waited and judged >= size:
        if row.step >= len(row.steps) - 1:
            row.state, row.reason = "completed", "every step passed"
            row.targets_total = len(_eligible(policy))
        else:
            row.step += 1
            row.step_started_at = now
            grow_cohort(row, policy)
            row.reason = f"step {row.step - 1} passed; now at {list(row.steps)[row.step]} %"
        row.updated_at = now
        save_decision(row)
        return Event(row.id, row.state if row.state == "completed" else "advanced")
    return None


def _policy_tick(policy: Policy) -> Event | None:
    latest = (Rollout.select().where(Rollout.policy == policy.id)
              .order_by(Rollout.id.desc()).first())
    config = policy.rollout
    if latest is not None and latest.state in ("running", "paused"):
        if not config or not policy.enabled:
            latest.state, latest.reason = "aborted", "the policy's rollout block was removed"
            latest.updated_at = utcnow()
            save_decision(latest)
            return Event(latest.id, "aborted")
        return _judge(latest, policy)
    if not config or not policy.enabled:
        return None
    desired = desired_version(policy)
    if desired is None:
        return None
    if latest is None:
        return Event(_start(policy, config, None, desired).id, "baseline")
    baseline = latest.to_version if latest.state == "completed" else latest.from_version
    if desired == baseline or (desired == latest.to_version and latest.state in STOPPED):
        return None
    return Event(_start(policy, config, baseline, desired).id, "started")


def tick() -> list[Event]:
    """One round of decisions; an empty list when nothing changed (or another
    process holds the lock this second)."""
    # Most fleets have no rollout at all: one cheap read, and no write lock each second.
    if not (Policy.select().where(Policy.rollout.is_null(False)).exists()
            or Rollout.select().where(Rollout.state.in_(("running", "paused"))).exists()):
        return []
    with write_transaction():
        if not lock(wait=False):
            return []
        policies = Policy.select().where(
            Policy.rollout.is_null(False)
            | Policy.id.in_(Rollout.select(Rollout.policy)
                            .where(Rollout.state.in_(("running", "paused")))))
        events = [e for e in (_policy_tick(p) for p in policies) if e is not None]
        if any(e.what != "baseline" for e in events):
            revision.bump()  # who gets which version changed: every process rebuilds
        for event in events:  # the server's own decisions are audited like anyone's
            row = Rollout.get_by_id(event.rollout_id)
            audit.append(audit.SERVER, f"rollout.{event.what}", "rollout", str(row.id),
                         {"policy_id": row.policy_id, "from_version": row.from_version,
                          "to_version": row.to_version, "step": row.step,
                          "reason": row.reason})
    for event in events:
        log.info("rollout %s: %s", event.rollout_id, event.what)
    return events
