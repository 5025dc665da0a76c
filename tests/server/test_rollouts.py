"""Staged rollouts end to end: real server processes (two on PostgreSQL, sharing the
decisions), a fleet of agents simulated over the Agent API.

A good version advances through every step to 100 % with cohorts that only grow; a
bad version halts at the first step with only its cohort affected (within 5 s of the
report that crossed the threshold); rollback returns the cohort; pause and resume;
a restart mid-rollout resumes where it was."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.harness import ServerProcess, run_cli, wait_until
from tests.server.rollout_helpers import (
    SCRIPT,
    create_rollout_policy,
    current,
    fleet,
    rollouts,
    run_round,
    settle,
    wait_rollout,
)
from tests.server.test_agent_fixtures import publish_script
from tests.web.helpers import UiClient

OLD, NEW = "1.0.0", "1.1.0"


@pytest.fixture
def pg_pair(tmp_path: Path) -> Iterator[ServerProcess]:
    """Two server processes (one listening port) on one PostgreSQL database."""
    with fresh_database("postgresql", tmp_path) as url, ServerProcess.start(
            url, tmp_path, extra_args=("--processes", "2")) as server:
        yield server


def _start(server: ServerProcess, rollout: dict, count: int = 10):  # type: ignore[no-untyped-def]
    """A fleet on OLD, a policy with `rollout`, then NEW published: (agents, policy id)."""
    agents = fleet(server, count)
    publish_script(server.database_url, SCRIPT, OLD, b"#!/bin/sh\necho old\n")
    policy = create_rollout_policy(server, rollout)
    baseline = wait_rollout(server, policy, lambda r: r["state"] == "completed",
                            what="the baseline rollout")
    assert baseline["from_version"] is None and baseline["to_version"] == OLD
    settle(agents, OLD, count)
    assert set(run_round(agents, policy, lambda v: True).values()) == {OLD}
    publish_script(server.database_url, SCRIPT, NEW, b"#!/bin/sh\necho new\n")
    running = wait_rollout(server, policy, lambda r: r["to_version"] == NEW,
                           what="the rollout of the new version")
    assert running["state"] == "running" and running["from_version"] == OLD
    assert running["step"] == 0 and running["targets_total"] == count
    settle(agents, NEW, running["targets_on_new"])
    return agents, policy


def _on_new(seen: dict[str, str | None]) -> set[str]:
    return {host for host, version in seen.items() if version == NEW}


def test_good_version_advances_to_every_target(pg_pair: ServerProcess) -> None:
    agents, policy = _start(pg_pair, {"steps": [20, 50, 100], "wait": "1s"})
    sizes = set()
    deadline = time.monotonic() + 40
    while (state := current(pg_pair, policy))["state"] != "completed":
        assert time.monotonic() < deadline, state
        sizes.add(state["targets_on_new"])
        run_round(agents, policy, lambda v: True)
        time.sleep(0.3)
    final = current(pg_pair, policy)
    assert final["targets_on_new"] == 10 and final["runs_failed"] == 0
    assert final["step"] == 2 and final["reason"] == "every step passed"
    # Cohorts of 20 % and 50 % of 10 targets; a target that got the new version keeps
    # it (allowing the other process time to learn of each step: ~1 s, more under load).
    assert sizes == {2, 5, 10} or sizes == {2, 5}, sizes
    assert all(not sim.flips_back(NEW, grace=5) for sim in agents)
    wait_until(lambda: set(run_round(agents, policy, lambda v: True).values()) == {NEW},
               timeout=30, what="every target on the new version")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_bad_version_halts_at_the_first_step(backend: str, tmp_path: Path) -> None:
    extra = ("--processes", "2") if backend == "postgresql" else ()
    with fresh_database(backend, tmp_path) as url, \
            ServerProcess.start(url, tmp_path, extra_args=extra) as server:
        agents, policy = _start(server, {"steps": [20, 100], "wait": "30s",
                                         "max_failure_ratio": 0.1})
        cohort = set()
        crossed_at = None
        for sim in agents:
            if sim.poll() == NEW:
                cohort.add(sim.hostname)
                crossed_at = crossed_at or datetime.now(UTC)
                sim.report(policy, NEW, False)
            else:
                sim.report(policy, OLD, True)
        assert len(cohort) == 2 and crossed_at is not None
        halted = wait_rollout(server, policy, lambda r: r["state"] == "halted", timeout=30,
                              what="the halt")
        # Judged by the server's own clock (the decision's time), not by when this
        # test, on a loaded machine, got round to looking.
        halt_seconds = (datetime.fromisoformat(halted["updated_at"]) - crossed_at
                        ).total_seconds()
        print(f"halted {halt_seconds:.2f}s after the crossing report ({backend})")
        assert halt_seconds < 5
        assert halted["step"] == 0 and halted["runs_failed"] >= 1
        assert "failure ratio" in halted["reason"]
        detail = server.api("GET", f"/api/v1/rollouts/{halted['id']}", role="viewer").json
        assert {t["hostname"] for t in detail["failing_targets"]} <= cohort
        assert detail["failing_targets"]
        # Explain names the rollout and the cohort behind each node's version.
        for sim in agents[:4]:
            [item] = server.api("GET", f"/api/v1/targets/{sim.target_id}/explain",
                                role="viewer").json["policies"]
            inside = sim.hostname in cohort
            assert item["version"]["rollout_id"] == halted["id"]
            assert item["version"]["in_cohort"] is inside
            assert item["version"]["resolved"] == (NEW if inside else OLD)
        # Halt: the cohort keeps the new version, nobody else ever gets it.
        for _ in range(4):
            assert _on_new(run_round(agents, policy, lambda v: v == OLD)) == cohort
            time.sleep(0.5)
        assert current(server, policy)["state"] == "halted"
        # The web UI: a progress bar per rollout, the failing targets listed.
        ui = UiClient(server.url)
        ui.login(server.token("operator"))
        assert "<progress" in ui.get("/ui/rollouts").text
        assert "staged: 20 → 100 %" in ui.get(f"/ui/policies/{policy}").text
        assert str(halted["id"]) in ui.get(f"/ui/rollouts?policy_id={policy}").text
        page = ui.get(f"/ui/rollouts/{halted['id']}")
        assert all(host in page.text for host in cohort) and 'id="rollout-abort"' in page.text
        aborted = ui.post(f"/ui/rollouts/{halted['id']}/abort", {"csrf_token": page.csrf()})
        assert aborted.status == 303 and current(server, policy)["state"] == "aborted"


def test_rollback_returns_the_cohort(pg_pair: ServerProcess) -> None:
    agents, policy = _start(pg_pair, {"steps": [30, 100], "wait": "30s",
                                      "on_failure": "rollback"})
    first = run_round(agents, policy, lambda v: v == OLD)
    assert len(_on_new(first)) == 3
    wait_rollout(pg_pair, policy, lambda r: r["state"] == "rolled_back", timeout=30,
                 what="the rollback")
    wait_until(lambda: not _on_new(run_round(agents, policy, lambda v: True)), timeout=30,
               what="the cohort back on the old version")


def test_pause_resume_and_operator_actions(pg_pair: ServerProcess) -> None:
    agents, policy = _start(pg_pair, {"steps": [20, 100], "wait": "1s"})
    rollout_id = current(pg_pair, policy)["id"]
    path = f"/api/v1/rollouts/{rollout_id}"
    assert pg_pair.api("POST", f"{path}/pause", role="viewer").status == 403
    paused = pg_pair.api("POST", f"{path}/pause", role="operator")
    assert paused.status == 200 and paused.json["state"] == "paused", paused.body
    assert pg_pair.api("POST", f"{path}/pause", role="operator").status == 409
    for _ in range(5):  # runs succeed, the wait passes, yet a paused rollout stays put
        run_round(agents, policy, lambda v: True)
        time.sleep(0.4)
    assert current(pg_pair, policy)["state"] == "paused"
    assert current(pg_pair, policy)["step"] == 0
    assert pg_pair.api("POST", f"{path}/resume", role="operator").json["state"] == "running"

    def finished() -> bool:
        run_round(agents, policy, lambda v: True)
        return current(pg_pair, policy)["state"] == "completed"

    wait_until(finished, timeout=20, what="completion after resume")
    assert pg_pair.api("POST", f"{path}/abort", role="operator").status == 409
    assert pg_pair.api("GET", "/api/v1/rollouts/99999", role="viewer").status == 404
    entries = pg_pair.api("GET", "/api/v1/audit?object_type=rollout").json["data"]
    actions = [(e["action"], e["actor"]["kind"]) for e in reversed(entries)]
    # The operator's actions and the server's own decisions, each recorded once.
    assert actions == [("rollout.baseline", "server"), ("rollout.started", "server"),
                       ("rollout.pause", "token"), ("rollout.resume", "token"),
                       ("rollout.advanced", "server"), ("rollout.completed", "server")], actions


def test_promote_and_abort_through_the_cli(pg_pair: ServerProcess) -> None:
    agents, policy = _start(pg_pair, {"steps": [10, 100], "wait": "1h"})
    rollout_id = current(pg_pair, policy)["id"]
    flags = ["--server", pg_pair.url, "--token", pg_pair.token("operator")]
    listed = run_cli("aami", "rollout", "list", *flags).stdout
    assert f"{rollout_id}" in listed and "running" in listed and NEW in listed
    shown = run_cli("aami", "rollout", "show", str(rollout_id), *flags).stdout
    assert "1.0.0 -> 1.1.0" in shown and "10 %" in shown
    run_cli("aami", "rollout", "promote", str(rollout_id), *flags)
    assert current(pg_pair, policy)["state"] == "completed"
    wait_until(lambda: set(run_round(agents, policy, lambda v: True).values()) == {NEW},
               timeout=30, what="everyone on the promoted version")
    missing = run_cli("aami", "rollout", "pause", "99999", *flags, check=False)
    assert missing.returncode == 1 and "99999" in missing.stderr
    # A newer version starts a new rollout; aborting it puts everyone back.
    publish_script(pg_pair.database_url, SCRIPT, "1.2.0", b"#!/bin/sh\necho 3\n")
    newer = wait_rollout(pg_pair, policy, lambda r: r["to_version"] == "1.2.0",
                         what="the next rollout")
    assert newer["from_version"] == NEW
    run_round(agents, policy, lambda v: True)
    run_cli("aami", "rollout", "abort", str(newer["id"]), *flags)
    wait_until(lambda: set(run_round(agents, policy, lambda v: True).values()) == {NEW},
               timeout=30, what="everyone back on the previous version")
    assert [r["state"] for r in rollouts(pg_pair, policy)] == ["aborted", "completed",
                                                               "completed"]


def test_restart_mid_rollout_resumes(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as url:
        with ServerProcess.start(url, tmp_path, extra_args=("--processes", "2")) as server:
            agents, policy = _start(server, {"steps": [20, 50, 100], "wait": "4s"})

            def at_half() -> bool:
                run_round(agents, policy, lambda v: True)
                return current(server, policy)["step"] == 1

            wait_until(at_half, timeout=30, what="the second step")
            cohort = settle(agents, NEW, current(server, policy)["targets_on_new"])
            assert len(cohort) == 5
            tokens = {a.hostname: a.token for a in agents}
        with ServerProcess.start(url, tmp_path, extra_args=("--processes", "2")) as again:
            for sim in agents:
                sim.server = again
            state = current(again, policy)
            # Where it was: not back at the first step, the same cohort on the new version.
            assert state["state"] == "running" and state["step"] >= 1, state
            assert cohort <= _on_new(run_round(agents, policy, lambda v: True))

            def done() -> bool:
                run_round(agents, policy, lambda v: True)
                return current(again, policy)["state"] == "completed"

            wait_until(done, timeout=25, what="completion after the restart")
            assert tokens  # the same agents, the same credentials, across the restart


def test_an_edited_pin_starts_a_rollout(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url, ServerProcess.start(url, tmp_path) as server:
        agents = fleet(server, 4)
        publish_script(url, SCRIPT, OLD, b"#!/bin/sh\necho old\n")
        publish_script(url, SCRIPT, NEW, b"#!/bin/sh\necho new\n")
        reply = server.api("POST", "/api/v1/policies", role="operator", json_body={
            "name": "pinned", "script": SCRIPT, "version": OLD, "scope": "global",
            "schedule": {"mode": "once"}, "rollout": {"steps": [50, 100], "wait": "1h"}})
        assert reply.status == 201, reply.body
        policy = reply.json["id"]
        wait_rollout(server, policy, lambda r: r["to_version"] == OLD, what="the baseline")
        assert set(run_round(agents, policy, lambda v: True).values()) == {OLD}
        assert server.api("PATCH", f"/api/v1/policies/{policy}", role="operator",
                          json_body={"version": NEW}).status == 200
        started = wait_rollout(server, policy, lambda r: r["to_version"] == NEW,
                               what="the rollout of the new pin")
        assert started["from_version"] == OLD and started["state"] == "running"
        time.sleep(1.2)
        assert len(_on_new(run_round(agents, policy, lambda v: True))) == 2
        bad = server.api("PATCH", f"/api/v1/policies/{policy}", role="operator",
                         json_body={"rollout": {"steps": [50, 10]}})
        assert bad.status == 400 and bad.json["details"]["field"].startswith("body.rollout")
