"""Fixtures for web UI tests: a real server with a small fleet built through the real
CLI and APIs, once per module and database backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.harness import ServerProcess
from tests.web.helpers import FakeNode, publish_script


@dataclass
class Fleet:
    server: ServerProcess
    nodes: list[FakeNode]
    group_id: int
    policy_id: int
    backend: str


def build_fleet(server: ServerProcess, directory: Path, backend: str) -> Fleet:
    publish_script(server, directory)
    group = server.api("POST", "/api/v1/groups", json_body={
        "name": "ml-training", "priority": 10, "description": "GPU training nodes"})
    assert group.status == 201, group.body
    nodes = [FakeNode.register(server, f"gpu-node-{i:03d}", "--group", "ml-training")
             for i in range(3)]
    for node in nodes[:2]:
        node.heartbeat()
    policy = server.api("POST", "/api/v1/policies", json_body={
        "name": "disk-usage-ml", "script": "disk-usage", "scope": "group",
        "group": "ml-training", "params": {"threshold_percent": 85},
        "schedule": {"mode": "interval", "interval": "60s"}})
    assert policy.status == 201, policy.body
    policy_id = policy.json["id"]
    for i, node in enumerate(nodes):
        node.wait_for(lambda a: any(x["policy_id"] == policy_id for x in a))
        for k in range(6):
            ok = (k + i) % 3 != 0
            node.report("disk-usage", ok, policy_id=policy_id, minutes_ago=k * 40 + 3,
                        stdout=f"/data {70 + k}% used\n",
                        stderr="" if ok else "threshold exceeded on /data\n")
    nodes[1].refuse("evil-script")
    return Fleet(server, nodes, group.json["id"], policy_id, backend)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("ui")
    with fresh_database(request.param, directory) as url, \
            ServerProcess.start(url, directory) as server:
        yield build_fleet(server, directory, request.param)
