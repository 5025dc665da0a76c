"""Scheduler decisions as pure functions (no clock, no files)."""

from __future__ import annotations

from aami.agent.scheduler import (
    ScheduleMemory,
    decide,
    interval_due,
    interval_jitter,
    once_key,
    seconds_until_next,
)
from aami.agent.wire import Assignment, ScriptRef

SHA_A = "a" * 64
SHA_B = "b" * 64


def a(pid: int = 1, *, mode: str = "interval", interval: int | None = 60, sha: str = SHA_A,
      params: dict | None = None, force: str | None = None) -> Assignment:
    return Assignment(pid, f"p{pid}", ScriptRef("s", "1.0.0", sha, {}), params or {}, mode,
                      interval if mode == "interval" else None, None, None, force)


def mem(last: dict | None = None, once: dict | None = None, forced=(), running=()):
    return ScheduleMemory(last or {}, once or {}, set(forced), set(running))


def triggers(assignments, memory, now=1000.0):
    return [(d.assignment.policy_id, d.trigger) for d in
            decide(assignments, memory, now=now, hostname="n1", jitter_cap=0)]


def test_interval_runs_when_never_run_and_after_the_interval() -> None:
    assert triggers([a()], mem()) == [(1, "schedule")]
    assert triggers([a()], mem({"1": 950.0})) == []
    assert triggers([a()], mem({"1": 940.0})) == [(1, "schedule")]


def test_no_catch_up_burst_after_downtime() -> None:
    # Down for ten intervals: exactly one run is due, and after it, none.
    assert triggers([a()], mem({"1": 400.0})) == [(1, "schedule")]
    assert triggers([a()], mem({"1": 1000.0}), now=1001.0) == []


def test_clock_going_backwards_does_not_stall_a_policy() -> None:
    assert interval_due(5000.0, 60, 0, now=1000.0)


def test_jitter_is_stable_bounded_and_differs_between_nodes() -> None:
    j1 = interval_jitter("node-1", 5, 60, 30)
    assert j1 == interval_jitter("node-1", 5, 60, 30)
    assert 0 <= j1 < 6  # 10 % of 60 s
    assert interval_jitter("node-1", 5, 3600, 30) < 30
    assert len({interval_jitter(f"node-{i}", 5, 600, 30) for i in range(20)}) > 15


def test_once_runs_once_per_hash_and_params() -> None:
    item = a(mode="once", params={"x": 1})
    assert triggers([item], mem()) == [(1, "once")]
    done = {"1": once_key(SHA_A, {"x": 1})}
    assert triggers([item], mem(once=done)) == []
    assert triggers([a(mode="once", params={"x": 2})], mem(once=done)) == [(1, "once")]
    assert triggers([a(mode="once", sha=SHA_B, params={"x": 1})], mem(once=done)) == [(1, "once")]


def test_once_key_ignores_key_order() -> None:
    assert once_key(SHA_A, {"a": 1, "b": 2}) == once_key(SHA_A, {"b": 2, "a": 1})


def test_force_token_runs_once_whatever_the_mode() -> None:
    done = {"1": once_key(SHA_A, {})}
    forced = a(mode="once", force="tok-1")
    assert triggers([forced], mem(once=done)) == [(1, "force")]
    assert triggers([forced], mem(once=done, forced={"tok-1"})) == []
    decision = decide([forced], mem(once=done), now=0, hostname="n")[0]
    assert decision.force_token == "tok-1"
    assert triggers([a(force="tok-2")], mem({"1": 999.0})) == [(1, "force")]


def test_running_policy_is_never_started_twice() -> None:
    assert triggers([a(), a(2, force="t")], mem(running={1, 2})) == []


def test_seconds_until_next() -> None:
    assert seconds_until_next([a()], mem({"1": 990.0}), now=1000.0, hostname="n",
                              jitter_cap=0) == 50.0
    assert seconds_until_next([a(mode="once")], mem(), now=0, hostname="n") is None
    assert seconds_until_next([a()], mem(), now=0, hostname="n") == 0.0
