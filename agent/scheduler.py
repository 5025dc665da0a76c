"""Step 3 of a poll: which verified assignments are due now. Pure functions, no I/O.

- interval: due when never run, or when `interval + jitter` has passed since the last
  start. Only the last start is remembered, so after downtime a policy runs once, not
  once per missed slot (no catch-up burst that would hammer a node after a reboot).
  The jitter is a stable per-node, per-policy offset (up to 10 % of the interval,
  capped), so a thousand nodes with the same policy do not run in lock-step.
- once: due when the (script hash, parameters) key differs from the one recorded for
  the policy; the record is persisted, so a restart does not re-run it, and a new
  script version or new parameters run it again (hash-based change detection).
- force: a force token the agent has not honoured yet runs the policy now, whatever
  its mode; honoured tokens are persisted (before the run starts) so a restart does
  not replay an old force-run.

A policy already running is never started twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aami.agent.wire import Assignment


@dataclass(frozen=True)
class ScheduleMemory:
    """The persisted facts the decisions depend on (a read-only view of the state)."""

    last_runs: Mapping[str, float]
    once_done: Mapping[str, str]
    force_done: Collection[str]
    running: Collection[int]


@dataclass(frozen=True)
class RunDecision:
    assignment: Assignment
    trigger: str  # "schedule" | "once" | "force"

    @property
    def force_token(self) -> str | None:
        return self.assignment.force_token if self.trigger == "force" else None


def once_key(sha256: str, params: Mapping[str, Any]) -> str:
    """Identity of a once-run: the script bytes and the exact parameters."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return f"{sha256}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def interval_jitter(hostname: str, policy_id: int, interval: float, cap: float) -> float:
    """A stable offset in [0, min(10 % of interval, cap)) for this node and policy."""
    digest = hashlib.sha256(f"{hostname}/{policy_id}".encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 2**32
    return fraction * min(interval * 0.1, cap)


def interval_due(last_start: float | None, interval: float, jitter: float, now: float) -> bool:
    if last_start is None:
        return True
    if now < last_start:
        return True  # the wall clock went backwards: do not wait out the difference
    return now - last_start >= interval + jitter


def decide(
    assignments: Sequence[Assignment],
    memory: ScheduleMemory,
    *,
    now: float,
    hostname: str,
    jitter_cap: float = 30.0,
) -> list[RunDecision]:
    """Every run that should start now, at most one per policy."""
    due: list[RunDecision] = []
    for a in assignments:
        if a.policy_id in memory.running:
            continue
        key = str(a.policy_id)
        if a.force_token and a.force_token not in memory.force_done:
            due.append(RunDecision(a, "force"))
        elif a.mode == "once":
            if memory.once_done.get(key) != once_key(a.script.sha256, a.params):
                due.append(RunDecision(a, "once"))
        elif a.mode == "interval" and a.interval_seconds:
            jitter = interval_jitter(hostname, a.policy_id, a.interval_seconds, jitter_cap)
            if interval_due(memory.last_runs.get(key), a.interval_seconds, jitter, now):
                due.append(RunDecision(a, "schedule"))
    return due


def seconds_until_next(
    assignments: Sequence[Assignment],
    memory: ScheduleMemory,
    *,
    now: float,
    hostname: str,
    jitter_cap: float = 30.0,
) -> float | None:
    """How long until the next interval run (None: nothing scheduled)."""
    waits: list[float] = []
    for a in assignments:
        if a.mode != "interval" or not a.interval_seconds or a.policy_id in memory.running:
            continue
        last = memory.last_runs.get(str(a.policy_id))
        if last is None or now < last:
            return 0.0
        jitter = interval_jitter(hostname, a.policy_id, a.interval_seconds, jitter_cap)
        waits.append(max(0.0, last + a.interval_seconds + jitter - now))
    return min(waits) if waits else None
