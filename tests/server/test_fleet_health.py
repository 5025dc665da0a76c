"""The fleet's success metrics: heartbeat gaps judged, poll counters summed, runs per
policy, reported by GET /api/v1/fleet/health and /metrics of a real server process."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aami.server.services.fleet_health import exposition, fleet_health
from aami.server.services.heartbeats import (
    Health,
    Heartbeat,
    Previous,
    flush_target_health,
    hour_of,
    judge,
)
from tests.harness import ServerProcess, wait_until
from tests.server.test_agent_fixtures import (
    agent,
    create_group,
    create_policy,
    direct_db,
    execution,
    join_group,
    publish_script,
    register,
)

T0 = datetime(2026, 12, 1, 12, 0, 0)


def beat(at: datetime, *, uptime: int = 100, polls: int | None = None,
         failed: int | None = None) -> Heartbeat:
    return Heartbeat(1, at, "1.0.0", uptime, 30, {}, polls, failed)


def before(at: datetime | None, *, uptime: int = 70, polls: int = 0, failed: int = 0,
           interval: int = 30) -> Previous:
    return Previous(at, interval, uptime, polls, failed)


def test_a_first_heartbeat_has_no_gap() -> None:
    assert judge(None, beat(T0)) == Health()
    assert judge(before(None), beat(T0)) == Health()


@pytest.mark.parametrize(("gap", "ok"), [(30, 1), (25, 1), (35, 1), (24.9, 0), (35.1, 0),
                                        (90, 0), (1, 0)])
def test_a_gap_is_compliant_within_the_told_interval_plus_or_minus_5s(gap: float,
                                                                      ok: int) -> None:
    health = judge(before(T0), beat(T0 + timedelta(seconds=gap)))
    assert (health.heartbeat_gaps, health.heartbeat_gaps_ok) == (1, ok)


def test_the_gap_is_judged_against_the_interval_told_before_it() -> None:
    # The server lowered the interval to 10 s with this very heartbeat: the agent
    # slept the 60 s it had been told, which is compliant.
    health = judge(before(T0, interval=60), beat(T0 + timedelta(seconds=61)))
    assert health.heartbeat_gaps_ok == 1


def test_poll_counters_are_deltas_and_a_restart_starts_again() -> None:
    assert judge(before(T0, polls=100, failed=2), beat(T0 + timedelta(seconds=30),
                 polls=103, failed=3)) == Health(1, 1, 3, 1)
    restarted = judge(before(T0, uptime=5000, polls=100, failed=2),
                      beat(T0 + timedelta(seconds=30), uptime=20, polls=4, failed=0))
    assert (restarted.polls, restarted.polls_failed) == (4, 0)
    old_agent = judge(before(T0), beat(T0 + timedelta(seconds=30)))
    assert (old_agent.polls, old_agent.polls_failed) == (0, 0)


def test_exposition_is_strict_prometheus_text() -> None:
    health = {"heartbeat_compliance": 0.5, "poll_success_rate": None,
              "script_success_rate": 1.0,
              "targets": {"online": 2, "stale": 0, "offline": 1, "never": 0},
              "policies": [{"name": "disk-usage", "success_rate": 0.75},
                           {"name": "idle", "success_rate": None}]}
    families = {f.name: f for f in text_string_to_metric_families(exposition(health, "1h"))}
    assert set(families) == {"aami_fleet_heartbeat_compliance_ratio",
                             "aami_fleet_script_success_ratio", "aami_fleet_targets",
                             "aami_fleet_policy_success_ratio"}
    policy = families["aami_fleet_policy_success_ratio"].samples
    assert [(s.labels, s.value) for s in policy] == [
        ({"window": "1h", "policy": "disk-usage"}, 0.75)]
    assert exposition({**health, "heartbeat_compliance": None, "script_success_rate": None,
                       "targets": {}, "policies": []}, "1h") == ""


def test_target_health_is_summed_per_hour(database_url: str) -> None:
    """The hourly rows a target's figures come from add up across flushes."""
    with direct_db(database_url):
        from aami.server.migrations import migrate
        from aami.server.models import Target, database_proxy

        migrate(database_proxy.obj)
        target = Target.create(hostname="hourly")
        now = datetime.utcnow().replace(microsecond=0)  # naive UTC, as stored
        key = (target.id, hour_of(now))
        assert flush_target_health({key: Health(3, 2, 10, 1)}) == 1
        assert flush_target_health({key: Health(1, 1, 5, 0),
                                    (987654, hour_of(now)): Health(1, 1, 1, 0)}) == 1
        health = fleet_health(3600, target_id=target.id, now=now)
        assert health["counts"]["heartbeat_gaps"] == 4
        assert health["heartbeat_compliance"] == 0.75
        assert health["poll_success_rate"] == round(14 / 15, 6)
        assert health["targets"] == {"online": 0, "stale": 0, "offline": 0, "never": 1}


def _fleet(server: ServerProcess, **query: str) -> dict:  # type: ignore[type-arg]
    path = "/api/v1/fleet/health?" + "&".join(f"{k}={v}" for k, v in query.items())
    reply = server.api("GET", path, role="viewer")
    assert reply.status == 200, reply.body
    return reply.json


def test_the_server_measures_a_fleet_over_http(live_server: ServerProcess) -> None:
    create_group(live_server, "fast", heartbeat_interval_seconds=1)
    steady, steady_token = register(live_server, "steady-node")
    late, late_token = register(live_server, "late-node")
    for target_id in (steady, late):
        join_group(live_server.database_url, target_id, "fast")
    sha = publish_script(live_server.database_url, "disk-usage", "1.0.0", b"echo ok\n")
    policy_id = create_policy(live_server.database_url, "disk-check", "disk-usage",
                              scope="global")

    def heartbeat(token: str, uptime: int, polls: int, failed: int) -> None:
        """One heartbeat, then wait until the server has stored it: the server writes
        heartbeats once a second, the latest per target, so two sent within one write
        (a slow write on a loaded machine) would count as one."""
        body = {"agent_version": "1.0.0", "uptime_seconds": uptime, "polls_total": polls,
                "polls_failed": failed}
        reply = agent(live_server, "POST", "/heartbeat", token, json_body=body)
        assert reply.status == 200, reply.body
        target_id = steady if token == steady_token else late

        def stored() -> bool:
            row = live_server.api("GET", f"/api/v1/targets/{target_id}", role="viewer").json
            return (row.get("agent_status") or {}).get("uptime_seconds") == uptime

        wait_until(stored, timeout=30, what=f"the heartbeat of uptime {uptime} stored")

    def told_one_second(token: str) -> bool:
        reply = agent(live_server, "GET", "/config", token)
        return reply.status == 200 and reply.json["heartbeat_interval_seconds"] == 1

    for token in (steady_token, late_token):  # the group's interval is in effect
        wait_until(lambda t=token: told_one_second(t), timeout=30, what="group interval")
    # Both beat once a second as told (the flush takes one heartbeat per second each).
    # Then the late one goes silent for 8 s and beats again (same process: a late
    # gap), then restarts with fresh counters (a restart is not a gap).
    for second in range(4):
        heartbeat(steady_token, 10 + second, 10 * (second + 1), 0)
        heartbeat(late_token, 10 + second, 10 * (second + 1), second)
        time.sleep(1.05)
    time.sleep(8)
    heartbeat(late_token, 22, 45, 3)
    time.sleep(1.1)
    heartbeat(late_token, 1, 5, 0)
    runs = [execution(policy_id, sha, success=ok) for ok in (True, True, True, False)]
    assert agent(live_server, "POST", "/executions", steady_token,
                 json_body={"executions": runs}).status == 200
    health: dict = {}  # type: ignore[type-arg]

    def measured() -> bool:
        health.update(_fleet(live_server, window="1h"))
        return health["counts"]["polls"] >= 90 and health["script_success_rate"] is not None

    wait_until(measured, timeout=30, what="heartbeats and runs measured")
    # steady: 3 gaps of ~1 s; late: 3 of ~1 s and one of ~9 s.
    assert health["counts"]["heartbeat_gaps"] == 7
    assert health["counts"]["heartbeat_gaps_ok"] == 6
    assert health["heartbeat_compliance"] == round(6 / 7, 6)
    # polls: steady 40; late 40 (3 failed), 5 more, then 5 after its restart
    assert health["counts"]["polls"] == 90 and health["counts"]["polls_failed"] == 3
    assert health["poll_success_rate"] == round(87 / 90, 6)
    assert health["script_success_rate"] == 0.75
    assert health["policies"] == [{"policy_id": policy_id, "name": "disk-check",
                                   "success_rate": 0.75, "runs": 4}]
    # (with a 1 s interval, "online" lasts 2 s: which state each is in depends on timing)
    assert sum(health["targets"].values()) == 2 and health["window_seconds"] == 3600

    metrics = live_server.api("GET", "/metrics", role=None).body.decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(metrics) for s in f.samples}
    assert samples[("aami_fleet_heartbeat_compliance_ratio", (("window", "1h"),))] == \
        round(6 / 7, 6)
    assert sum(samples[("aami_fleet_targets", (("state", state),))]
               for state in ("online", "stale", "offline", "never")) == 2


def test_bad_windows_and_unknown_targets_are_refused(shared_server: ServerProcess) -> None:
    for window in ("soon", "10s", "90d", "-1h"):
        reply = shared_server.api("GET", f"/api/v1/fleet/health?window={window}",
                                  role="viewer")
        assert reply.status == 400, (window, reply.body)
        assert reply.json["details"]["field"] == "query.window"
    missing = shared_server.api("GET", "/api/v1/fleet/health?target_id=999999", role="viewer")
    assert missing.status == 404 and missing.json["details"]["field"] == "query.target_id"
    empty = _fleet(shared_server, window="15m")
    assert empty["window_seconds"] == 900
    assert empty["heartbeat_compliance"] is None  # nothing to measure is not 0
