"""Explain: a target with competing policies at every scope, read through
`GET /api/v1/targets/{id}/explain` and `aami explain HOSTNAME` on a real server."""

from __future__ import annotations

from typing import Any

from tests.harness import ServerProcess, run_cli
from tests.server.test_agent_fixtures import (
    create_group,
    create_policy,
    join_group,
    publish_script,
    register,
)
from tests.web.helpers import UiClient


def _by_name(item: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["outcome"] for c in item["considered"]}


def test_explain_competing_policies(live_server: ServerProcess) -> None:
    url = live_server.database_url
    publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho 1\n",
                   params_schema={"type": "object", "properties": {
                       "a": {"type": "integer", "default": 0}}})
    publish_script(url, "disk-usage", "1.2.0", b"#!/bin/sh\necho 2\n")
    publish_script(url, "gpu", "2.0.0", b"#!/bin/sh\necho g\n")
    for name, priority in (("low", 1), ("high", 10), ("elsewhere", 50)):
        create_group(live_server, name, priority=priority)
    target_id, _ = register(live_server, "node-x")
    join_group(url, target_id, "low")
    join_group(url, target_id, "high")
    create_policy(url, "disk-global", "disk-usage", params={"a": 1, "g": True})
    create_policy(url, "disk-low", "disk-usage", scope="group", group="low", params={"a": 2})
    create_policy(url, "disk-high", "disk-usage", scope="group", group="high",
                  params={"a": 3, "h": 1})
    create_policy(url, "disk-elsewhere", "disk-usage", scope="group", group="elsewhere")
    create_policy(url, "disk-node", "disk-usage", scope="target", target="node-x",
                  params={"t": 1}, version="1.0.0", interval_seconds=120)
    create_policy(url, "disk-node-off", "disk-usage", scope="target", target="node-x",
                  enabled=False, priority=99)
    create_policy(url, "gpu-low", "gpu", scope="group", group="low", priority=100)
    create_policy(url, "gpu-high", "gpu", scope="group", group="high")
    create_policy(url, "gpu-high-2", "gpu", scope="group", group="high", priority=5)
    create_policy(url, "gpu-high-3", "gpu", scope="group", group="high", priority=5)

    reply = live_server.api("GET", f"/api/v1/targets/{target_id}/explain", role="viewer")
    assert reply.status == 200, reply.body
    data = reply.json
    assert data["target"]["hostname"] == "node-x"
    assert [g["name"] for g in data["target"]["groups"]] == ["low", "high"]
    disk, gpu = data["policies"]
    assert disk["key"] == "disk-usage" and disk["chosen"]["name"] == "disk-node"
    outcomes = _by_name(disk)
    assert outcomes["disk-node"].startswith("won")
    assert "more specific scope (target > group)" in outcomes["disk-high"]
    assert "more specific scope (target > global)" in outcomes["disk-global"]
    assert outcomes["disk-node-off"] == "not applicable: disabled"
    assert outcomes["disk-elsewhere"] == "not applicable: the target is not in group elsewhere"
    assert [c["name"] for c in disk["considered"]][:4] == [
        "disk-node", "disk-high", "disk-low", "disk-global"]  # ranked
    assert disk["version"] == {"requested": "1.0.0", "resolved": "1.0.0", "rollout_id": None,
                               "in_cohort": None, "note": ""}
    # Merged: defaults <- global <- low group <- high group <- target.
    assert disk["params"] == {"a": 3, "g": True, "h": 1, "t": 1}
    assert disk["schedule"]["mode"] == "interval" and disk["schedule"]["interval_seconds"] == 120

    assert gpu["chosen"]["name"] == "gpu-high-2"
    outcomes = _by_name(gpu)
    assert "higher priority (10 > 1)" in outcomes["gpu-low"]  # group priority beats policy's
    assert "higher policy priority (5 > 0)" in outcomes["gpu-high"]
    assert "older (lower id)" in outcomes["gpu-high-3"]
    assert gpu["version"]["resolved"] == "2.0.0"
    assert live_server.api("GET", "/api/v1/targets/99999/explain", role="viewer").status == 404

    out = run_cli("aami", "explain", "node-x", "--server", live_server.url,
                  "--token", live_server.token("viewer")).stdout
    assert "disk-usage: policy 'disk-node'" in out and "version: 1.0.0 -> 1.0.0" in out
    assert "gpu-low [group low, priority 100]: lost" in out
    ui = UiClient(live_server.url)
    ui.login(live_server.token("viewer"))
    page = ui.get(f"/ui/targets/{target_id}").text
    assert 'id="explain"' in page and "more specific scope (target &gt; group)" in page
    missing = run_cli("aami", "explain", "no-such-node", "--server", live_server.url,
                      "--token", live_server.token("viewer"), check=False)
    assert missing.returncode == 1 and "no-such-node" in missing.stderr
