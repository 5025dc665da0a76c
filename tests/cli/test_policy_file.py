"""Policy files: YAML items to canonical REST bodies, and the create/update/unchanged plan."""

from __future__ import annotations

import pytest
import yaml

from aami.policyfile import PolicyFileError, parse_policy_file, plan

EXAMPLE = """
policies:
  - name: disk-usage
    script: disk-usage
    version: latest
    scope: group
    group: ml-training
    params: {threshold_percent: 80, mounts: ["/", "/data"]}
    schedule: {mode: interval, interval: 60s}
    timeout: 30s
    run_as: aami-runner
    priority: 100
    enabled: true
  - name: inventory
    script: inventory
    version: "1.2.0"
    scope: target
    target: node-01
    schedule: {mode: once}
"""


def test_design_example_becomes_canonical_json() -> None:
    first, second = parse_policy_file(yaml.safe_load(EXAMPLE))
    assert first == {
        "name": "disk-usage",
        "script": "disk-usage",
        "version": "latest",
        "scope": "group",
        "group": "ml-training",
        "target": None,
        "params": {"threshold_percent": 80, "mounts": ["/", "/data"]},
        "schedule": {"mode": "interval", "interval_seconds": 60},
        "timeout_seconds": 30,
        "run_as": "aami-runner",
        "priority": 100,
        "enabled": True,
        "rollout": None,
    }
    assert second["schedule"] == {"mode": "once", "interval_seconds": None}
    assert second["timeout_seconds"] is None and second["params"] == {}
    assert (second["scope"], second["target"], second["group"]) == ("target", "node-01", None)


def _item(**fields: object) -> dict:
    base: dict = {"name": "p", "script": "s", "schedule": {"mode": "once"}}
    base.update(fields)
    return {"policies": [{"name": "ok", "script": "s", "schedule": {"mode": "once"}}, base]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule": {"mode": "interval", "interval": "often"}}, "policies[1].schedule.interval:"),
        ({"schedule": {"mode": "interval"}}, "policies[1].schedule.interval: required"),
        (
            {"schedule": {"mode": "once", "interval": "5m"}},
            "policies[1].schedule.interval: not allowed",
        ),
        ({"schedule": {"mode": "cron"}}, "policies[1].schedule.mode"),
        ({"schedule": None}, "policies[1].schedule: required"),
        ({"scope": "group"}, "policies[1].group: required with scope group"),
        ({"scope": "global", "target": "n1"}, "policies[1].target: not allowed with scope global"),
        ({"scope": "everywhere"}, "policies[1].scope"),
        ({"version": "1.2"}, "policies[1].version"),
        ({"timeout": "-5s"}, "policies[1].timeout"),
        ({"priority": "high"}, "policies[1].priority: must be an integer"),
        ({"enabled": "yes please"}, "policies[1].enabled"),
        ({"params": ["a"]}, "policies[1].params"),
        ({"script": None}, "policies[1].script: required"),
        ({"colour": "blue"}, "policies[1].colour: unknown key"),
        ({"name": "ok"}, "policies[1].name: 'ok' appears twice"),
    ],
)
def test_bad_items_name_their_path(fields: dict, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy_file(_item(**fields))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("data", [None, [], {"policy": []}, {"policies": {}}])
def test_bad_top_level(data: object) -> None:
    with pytest.raises(PolicyFileError):
        parse_policy_file(data)


def test_plan_creates_updates_and_leaves_alone() -> None:
    first, second = parse_policy_file(yaml.safe_load(EXAMPLE))
    stored_first = {**first, "id": 7, "created_at": "x", "updated_at": "y"}
    stored_second = {**second, "id": 8, "params": {"a": 1}, "enabled": 1}
    changes = plan([first, second], {"disk-usage": stored_first, "inventory": stored_second})
    assert [c.action for c in changes] == ["unchanged", "update"]
    assert changes[1].existing_id == 8
    assert changes[1].fields == ("params", "enabled")  # True is not 1 in JSON
    assert [c.action for c in plan([first], {})] == ["create"]


def test_rollout_block_becomes_canonical() -> None:
    (policy,) = parse_policy_file({"policies": [{
        "name": "p", "script": "s", "schedule": {"mode": "once"},
        "rollout": {"steps": [10, 50, 100], "wait": "10m", "on_failure": "rollback"}}]})
    assert policy["rollout"] == {"steps": [10, 50, 100], "wait_seconds": 600, "min_runs": 1,
                                 "max_failure_ratio": 0.1, "on_failure": "rollback"}


@pytest.mark.parametrize(("rollout", "message"), [
    ({"steps": [50, 10, 100]}, "policies[1].rollout.steps: a list of ascending"),
    ({"steps": [10, 50]}, "policies[1].rollout.steps"),
    ({"steps": [100], "wait": "soon"}, "policies[1].rollout.wait"),
    ({"steps": [100], "max_failure_ratio": 2}, "policies[1].rollout.max_failure_ratio"),
    ({"steps": [100], "on_failure": "panic"}, "policies[1].rollout.on_failure"),
    ({"steps": [100], "speed": 1}, "policies[1].rollout.speed: unknown key"),
    ("fast", "policies[1].rollout: must be a mapping"),
])
def test_bad_rollout_blocks_name_their_path(rollout: object, message: str) -> None:
    with pytest.raises(PolicyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_policy_file(_item(rollout=rollout))
