"""The old cron runner's route: the legacy array shape, and who may read it."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

from aami.server.services import legacy_checks
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
        "version": "1.2.0", "hash": check["hash"], "script_hash": check["hash"],
        "sha256": check["sha256"], "instance_id": check["instance_id"],
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


# Two scripts as a site signed them: interpreter in the statement, no shebang line.
SHELL_V1 = (b'read -r config\n'
            b'threshold=$(echo "$config" | sed \'s/.*"threshold": *\\([0-9]*\\).*/\\1/\')\n'
            b'echo "legacy_disk_v1 $threshold"\n')
SHELL_V2 = b'read -r config\necho "legacy_disk_v2 1"\n'
PYTHON = (b"import json, sys\nconfig = json.load(sys.stdin)\n"
          b"print('legacy_py_threshold', config['threshold'])\n")


def _run_old_runner(s: ServerProcess, root: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("old_cron_runner.py")), s.url,
         "node-01", str(root / "textfiles"), str(root / "checks")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_old_cron_runner_follows_a_version_change(tmp_path: Path) -> None:
    """The old runner's whole contract, through its own loop in a real subprocess:
    fetch without a token, cache by `script_hash`, execute the file directly with
    the config on stdin, write the textfile; then a new version is picked up."""
    config = tmp_path / "server.yaml"
    config.write_text("compat: {legacy_checks: true}\n")
    schema = {"type": "object", "properties": {"threshold": {"type": "integer", "default": 80}}}
    with fresh_database("sqlite", tmp_path) as url, \
            ServerProcess.start(url, tmp_path, config=str(config)) as s:
        pub = Publisher()
        pub.register(s)
        for name, version, content, interpreter in (
                ("disk", "1.0.0", SHELL_V1, "bash"), ("py", "1.0.0", PYTHON, "python3")):
            assert s.api("POST", "/api/v1/scripts", json_body=pub.sign(
                name, version, content, interpreter=interpreter,
                params_schema=schema)).status == 201
        assert s.api("POST", "/api/v1/targets", json_body={"hostname": "node-01"}).status == 201
        for script in ("disk", "py"):
            assert s.api("POST", "/api/v1/policies", json_body={
                "name": f"{script}-all", "scope": "global", "script": script,
                "params": {"threshold": 91},
                "schedule": {"mode": "interval", "interval": "60s"}}).status == 201

        items = {item["name"]: item for item in
                 s.api("GET", "/api/v1/checks/target/hostname/node-01", role=None).json}
        assert items["py"]["language"] == "python" and items["py"]["script_type"] == "python"
        assert items["disk"]["language"] == "bash"
        assert items["disk"]["script_content"].startswith("#!/usr/bin/env bash\n")
        for item in items.values():
            served = hashlib.sha256(item["script_content"].encode()).hexdigest()
            assert item["hash"] == item["script_hash"] == served != item["sha256"]

        _run_old_runner(s, tmp_path)
        textfiles = tmp_path / "textfiles"
        assert (textfiles / "disk.prom").read_text() == "legacy_disk_v1 91\n"
        assert (textfiles / "py.prom").read_text() == "legacy_py_threshold 91\n"

        assert s.api("POST", "/api/v1/scripts", json_body=pub.sign(
            "disk", "1.1.0", SHELL_V2, interpreter="bash",
            params_schema=schema)).status == 201
        _run_old_runner(s, tmp_path)
        assert (textfiles / "disk.prom").read_text() == "legacy_disk_v2 1\n"
        cached = sorted(p.name for p in (tmp_path / "checks" / "disk").glob("disk_*.sh"))
        assert len(cached) == 2, cached


def test_runnable_content() -> None:
    """A shebang for the signed interpreter is prepended unless it is already there;
    another shebang stays as a comment line, as under the agent's `interpreter file`."""
    assert legacy_checks.runnable_content(b"echo hi\n", "bash") == \
        "#!/usr/bin/env bash\necho hi\n"
    assert legacy_checks.runnable_content(b"#!/bin/sh\necho hi\n", "/bin/sh") == \
        "#!/bin/sh\necho hi\n"
    assert legacy_checks.runnable_content(b"#!/usr/bin/env bash\nx\n", "bash") == \
        "#!/usr/bin/env bash\nx\n"
    assert legacy_checks.runnable_content(b"#!/bin/bash -e\nx\n", "bash") == \
        "#!/usr/bin/env bash\n#!/bin/bash -e\nx\n"
    assert legacy_checks.runnable_content(b"#!/bin/sh\necho hi\n", "bash") == \
        "#!/usr/bin/env bash\n#!/bin/sh\necho hi\n"
    assert legacy_checks.legacy_language("/usr/bin/python3.11") == "python"
    assert legacy_checks.legacy_language("perl") == "perl"
