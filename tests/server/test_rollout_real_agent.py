"""A staged rollout with real `aami-agent` processes (one cycle each, `--once`): the
policy and its rollout block go through `aami policy apply`, scripts are signed and
published with the real CLI, and a bad version is halted at the first step with only
its cohort having run it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.realserver import Site, site
from tests.harness import run_cli, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Site]:
    with site(tmp_path / "site") as the_site:
        yield the_site


def _rollout(s: Site) -> dict[str, Any]:
    rows = s.server.api("GET", "/api/v1/rollouts", role="viewer").json["data"]
    return dict(rows[0]) if rows else {}


def _runs(s: Site) -> list[tuple[str, str, bool]]:
    rows = s.server.api("GET", "/api/v1/executions?limit=500").json["data"]
    hosts = {t["id"]: t["hostname"] for t in
             s.server.api("GET", "/api/v1/targets?limit=500").json["data"]}
    return sorted((hosts[r["target_id"]], r["script_version"], r["success"]) for r in rows)


def test_bad_version_halted_with_real_agents(s: Site, tmp_path: Path) -> None:
    s.publish(s.sign("disk", "1.0.0", 'echo "disk ok"\n'))
    # `once`: each agent runs each distinct version once, so a run shows who got what.
    s.apply({"name": "disk", "script": "disk", "version": "latest", "scope": "global",
             "schedule": {"mode": "once"}, "timeout": "20s",
             "rollout": {"steps": [50, 100], "wait": "1h", "max_failure_ratio": 0.1}})
    boot = s.bootstrap_token("--max-uses", "2")
    configs = [s.agent_config(tmp_path / f"state-{h}", hostname=h) for h in ("node-a", "node-b")]

    def once(config: Path, token: str | None = None) -> int:
        args = ["aami-agent", "run", "--config", str(config), "--once"]
        return run_cli(*args, *(["--token", token] if token else []), check=False,
                       timeout=120).returncode

    assert [once(c, boot) for c in configs] == [0, 0]
    wait_until(lambda: _rollout(s).get("to_version") == "1.0.0", timeout=10,
               what="the baseline")

    s.publish(s.sign("disk", "1.1.0", 'echo "broken build" >&2\nexit 3\n'))
    wait_until(lambda: _rollout(s).get("to_version") == "1.1.0", timeout=30,
               what="the rollout of 1.1.0")
    # A cycle on each node until the cohort's node gets 1.1.0: the server drops its
    # cached assignments within about a second (server/caches.py), later under load,
    # and a `once` policy does not run the old version again meanwhile.
    codes: list[int] = []

    def cohort_ran_it() -> bool:
        codes.extend(once(c) for c in configs)
        return any(version == "1.1.0" for _, version, _ in _runs(s))

    wait_until(cohort_ran_it, timeout=60, what="the cohort's node running 1.1.0")
    assert codes.count(1) == 1, codes  # the cohort's node ran 1.1.0 once, and it failed
    halted = {}
    wait_until(lambda: halted.update(_rollout(s)) or halted.get("state") == "halted",
               timeout=30, what="the halt")
    assert halted["targets_on_new"] == 1 and halted["runs_failed"] == 1
    time.sleep(1.5)
    for config in configs:  # another cycle each: the other node still never gets 1.1.0
        once(config)
    runs = _runs(s)
    bad = [r for r in runs if r[1] == "1.1.0"]
    assert {r[0] for r in bad} == {halted_host(s, halted["id"])}
    assert all(not r[2] for r in bad)
    assert sum(1 for r in runs if r[1] == "1.0.0" and r[2]) == 2


def halted_host(s: Site, rollout_id: int) -> str:
    detail = s.server.api("GET", f"/api/v1/rollouts/{rollout_id}", role="viewer").json
    [failing] = detail["failing_targets"]
    return str(failing["hostname"])
