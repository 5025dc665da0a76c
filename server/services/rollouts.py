"""Staged rollouts: settings, the operator's actions and the wire form
(docs/rollouts.md). The decisions taken by the server itself (start, judge, advance,
halt) live in `rollout_engine.py`.

A policy's `rollout` block, canonical form:
`{"steps": [10, 50, 100], "wait_seconds": 600, "min_runs": 1, "max_failure_ratio": 0.1,
"on_failure": "halt"}`; on input `wait: 10m` is accepted too.

States: `running` (the current step's cohort has the new version and is being
judged), `paused` (no advancing; a failure still halts it), `halted` (stopped on
failures: the cohort keeps the new version, nobody else gets it), `rolled_back`
(stopped on failures: the cohort returns to the old version), `completed` (everyone
has the new version), `aborted` (stopped by an operator: everyone on the old version).

Every action runs under the rollout lock (`rollout_engine.lock`), so two server
processes never take the same decision twice, and bumps the configuration revision
so that every process rebuilds the assignments it serves.
"""

from __future__ import annotations

import itertools
from typing import Any

from aami.server.db import tuples, write_transaction
from aami.server.errors import Conflict, NotFound, ValidationFailed
from aami.server.models import Rollout, RolloutTarget, Target
from aami.server.services import revision
from aami.server.services.rollout_engine import (
    cohort_size,
    failure_ratio,
    lock,
    save_decision,
    targets_on_new,
)
from aami.server.timefmt import iso, utcnow
from aami.units import parse_duration

STATES = ("running", "paused", "halted", "rolled_back", "completed", "aborted")
ACTIVE = ("running", "paused")
ON_FAILURE = ("halt", "rollback")
DEFAULTS: dict[str, Any] = {"wait_seconds": 600, "min_runs": 1, "max_failure_ratio": 0.1,
                            "on_failure": "halt"}
_KEYS = {"steps", "wait", "wait_seconds", "min_runs", "max_failure_ratio", "on_failure"}
MAX_WAIT_SECONDS = 31_536_000


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"field": field})


def _steps(value: Any, field: str) -> list[int]:
    if not isinstance(value, list) or not value or len(value) > 20:
        raise _fail(field, "must be a list of 1 to 20 percentages")
    if any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 100 for v in value):
        raise _fail(field, "each step is a whole percentage in 1..100")
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise _fail(field, "steps must be strictly ascending")
    if value[-1] != 100:
        raise _fail(field, "the last step must be 100")
    return list(value)


def _wait(body: dict[str, Any], field: str) -> int:
    if "wait" in body and "wait_seconds" in body:
        raise _fail(f"{field}.wait", "give either wait or wait_seconds, not both")
    raw = body.get("wait", body.get("wait_seconds", DEFAULTS["wait_seconds"]))
    where = f"{field}.wait" if "wait" in body else f"{field}.wait_seconds"
    try:
        seconds = parse_duration(raw)
    except (TypeError, ValueError) as exc:
        raise _fail(where, str(exc)) from None
    if seconds != int(seconds) or not 1 <= seconds <= MAX_WAIT_SECONDS:
        raise _fail(where, f"must be a whole number of seconds in 1..{MAX_WAIT_SECONDS}")
    return int(seconds)


def normalise_config(value: Any, field: str = "body.rollout") -> dict[str, Any] | None:
    """The canonical rollout block for a request's `rollout` (None: no rollout)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(field, "must be an object or null")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise _fail(f"{field}.{unknown[0]}", "unknown field")
    if "steps" not in value:
        raise _fail(f"{field}.steps", "is required")
    min_runs = value.get("min_runs", DEFAULTS["min_runs"])
    if not isinstance(min_runs, int) or isinstance(min_runs, bool) or not 1 <= min_runs <= 1000:
        raise _fail(f"{field}.min_runs", "must be a whole number in 1..1000")
    ratio = value.get("max_failure_ratio", DEFAULTS["max_failure_ratio"])
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
        raise _fail(f"{field}.max_failure_ratio", "must be a number in 0..1")
    on_failure = value.get("on_failure", DEFAULTS["on_failure"])
    if on_failure not in ON_FAILURE:
        raise _fail(f"{field}.on_failure", "must be halt or rollback")
    return {"steps": _steps(value["steps"], f"{field}.steps"),
            "wait_seconds": _wait(value, field), "min_runs": min_runs,
            "max_failure_ratio": float(ratio), "on_failure": on_failure}


# -- reading -------------------------------------------------------------------------


def _get(rollout_id: int) -> Rollout:
    row = Rollout.get_or_none(Rollout.id == rollout_id)
    if row is None:
        raise NotFound(f"rollout {rollout_id} does not exist", details={"id": rollout_id})
    return row


def to_wire(row: Rollout, on_new: int | None = None) -> dict[str, Any]:
    steps = list(row.steps)
    on_new = targets_on_new(row) if on_new is None else on_new
    return {
        "id": row.id, "policy_id": row.policy_id, "script": row.script_name,
        "from_version": row.from_version, "to_version": row.to_version,
        "state": row.state, "step": row.step, "steps": steps,
        "percent": steps[min(row.step, len(steps) - 1)],
        "targets_total": row.targets_total,
        "targets_on_new": on_new,
        "runs_ok": row.runs_ok, "runs_failed": row.runs_failed,
        "failure_ratio": failure_ratio(row.runs_ok, row.runs_failed,
                                       cohort_size(row), row.min_runs),
        "reason": row.reason,
        "wait_seconds": row.wait_seconds, "min_runs": row.min_runs,
        "max_failure_ratio": row.max_failure_ratio, "on_failure": row.on_failure,
        "step_started_at": iso(row.step_started_at),
        "started_at": iso(row.started_at), "updated_at": iso(row.updated_at),
    }


def failing_targets(row: Rollout, limit: int = 100) -> list[dict[str, Any]]:
    """Cohort targets that reported failed runs of the new version, worst first."""
    query = (RolloutTarget
             .select(RolloutTarget.target, Target.hostname, RolloutTarget.runs_failed,
                     RolloutTarget.runs_ok)
             .join(Target, on=(Target.id == RolloutTarget.target))
             .where(RolloutTarget.rollout == row.id, RolloutTarget.runs_failed > 0)
             .order_by(RolloutTarget.runs_failed.desc(), Target.hostname).limit(limit))
    return [{"target_id": t, "hostname": h, "runs_failed": int(f), "runs": int(f) + int(o)}
            for t, h, f, o in tuples(query)]


def get(rollout_id: int) -> dict[str, Any]:
    row = _get(rollout_id)
    return {**to_wire(row), "failing_targets": failing_targets(row)}


def list_rollouts(*, policy_id: int | None = None, state: str | None = None,
                  limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    query = Rollout.select().order_by(Rollout.id.desc())
    if policy_id is not None:
        query = query.where(Rollout.policy == policy_id)
    if state is not None:
        query = query.where(Rollout.state == state)
    return [to_wire(r) for r in query.limit(limit).offset(offset)], query.count()


# -- the operator's actions ------------------------------------------------------------

_ALLOWED = {
    "pause": ("running",),
    "resume": ("paused",),
    "abort": ("running", "paused", "halted"),
    "promote": ("running", "paused", "halted"),
}
_RESULT = {"pause": "paused", "resume": "running", "abort": "aborted", "promote": "completed"}


def act(rollout_id: int, action: str, who: str) -> dict[str, Any]:
    """pause | resume | abort | promote, or a Conflict naming the state it is in."""
    with write_transaction():
        lock(wait=True)
        row = _get(rollout_id)
        if row.state not in _ALLOWED[action]:
            raise Conflict(f"rollout {rollout_id} is {row.state}; {action} needs "
                           f"{' or '.join(_ALLOWED[action])}",
                           details={"id": rollout_id, "state": row.state})
        now = utcnow()
        row.state = _RESULT[action]
        row.reason = f"{action} by {who}"[:500]
        if action == "promote":
            row.step = len(row.steps) - 1
        if action == "resume":
            row.step_started_at = now  # the wait counts again from the resume
        row.updated_at = now
        save_decision(row)
        revision.bump()
    return get(rollout_id)
