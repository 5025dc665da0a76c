"""The old cron runner's route: the legacy array shape, and who may read it."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conftest import fresh_database
from tests.harness import ServerProcess
from tests.server.helpers import Publisher, make_agent_token

CONTENT = b"#!/bin/bash\necho disk_used_percent 42\n"


def _world(s: ServerProcess) -> None:
    pub = Publisher()
    pub.register(s)
    schema = {"type": "object", "properties": {"threshold": {"type": "integer", "default": 80},
                                               "mount": {"type": "string"}}}
    assert s.api("POST", "/api/v1/scripts", json_body=pub.sign(
        "disk-usage", "1.2.0", CONTENT, params_schema=schema)).status == 201
    assert s.api("POST", "/api/v1/groups", json_body={"name": "gpu"}).status == 201
    assert s.api("POST", "/api/v1/targets",
                 json_body={"hostname": "node-01", "groups": ["gpu"]}).status == 201
    assert s.api("POST", "/api/v1/targets", json_body={"hostname": "node-02"}).status == 201
    for body in ({"name": "disk-all", "scope": "global", "params": {"mount": "/"}},
                 {"name": "disk-gpu", "scope": "group", "group": "gpu",
                  "params": {"mount": "/data"}}):
        reply = s.api("POST", "/api/v1/policies", json_body={
            **body, "script": "disk-usage", "schedule": {"mode": "interval", "interval": "60s"}})
        assert reply.status == 201, reply.body


def test_legacy_shape_and_access(live_server: ServerProcess) -> None:
    s = live_server
    _world(s)
    reply = s.api("GET", "/api/v1/checks/target/hostname/node-01", role="viewer")
    assert reply.status == 200, reply.body
    [check] = reply.json
    assert check == {
        "name": "disk-usage", "script_type": "shell", "language": "bash",
        "script_content": CONTENT.decode(), "config": {"threshold": 80, "mount": "/data"},
        "version": "1.2.0", "hash": check["hash"], "instance_id": check["instance_id"],
    }
    other = s.api("GET", "/api/v1/checks/target/hostname/node-02").json
    assert other[0]["config"] == {"threshold": 80, "mount": "/"}

    assert s.api("GET", "/api/v1/checks/target/hostname/node-01", role=None).status == 401
    agent = make_agent_token(s.database_url, "node-01")
    assert s.api("GET", "/api/v1/checks/target/hostname/node-01", token=agent).status == 200
    foreign = s.api("GET", "/api/v1/checks/target/hostname/node-02", token=agent)
    assert foreign.status == 403 and foreign.json["code"] == "FORBIDDEN"
    missing = s.api("GET", "/api/v1/checks/target/hostname/node-99")
    assert missing.status == 404
    bootstrap = s.bootstrap_token()
    assert s.api("GET", "/api/v1/checks/target/hostname/node-01",
                 token=bootstrap).status == 401


def test_open_while_legacy_checks_is_on(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("compat: {legacy_checks: true}\n")
    with fresh_database("sqlite", tmp_path) as url, \
            ServerProcess.start(url, tmp_path, config=str(config)) as s:
        _world(s)
        reply = s.api("GET", "/api/v1/checks/target/hostname/node-01", role=None)
        assert reply.status == 200 and reply.json[0]["name"] == "disk-usage"
        assert base64.b64encode(reply.json[0]["script_content"].encode()) == \
            base64.b64encode(CONTENT)
        assert "legacy_checks is on" in s.log()
