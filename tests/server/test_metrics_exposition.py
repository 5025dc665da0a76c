"""The server's /metrics is what Prometheus expects: the exposition format's media
type, and text that `promtool check metrics` (Debian's `prometheus` package, installed
by scripts/install-system-deps.sh) accepts without a single complaint, in one process
and in the multi-process mode of `serve --processes`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.harness import ServerProcess, http, require
from tests.server.helpers import make_agent_token


def _promtool() -> str:
    found = shutil.which("promtool")
    require(found is not None, "promtool missing: run scripts/install-system-deps.sh "
            "(Debian package prometheus)")
    assert found is not None
    return found


def _traffic(s: ServerProcess) -> None:
    """Touch every family the server exposes: routes, errors, auth failures, fleet."""
    assert s.api("GET", "/api/v1/groups").status == 200
    assert s.api("GET", "/api/v1/targets/999999").status == 404
    assert s.api("GET", "/api/v1/groups", token="aami_adm_" + "x" * 43).status == 401
    agent = make_agent_token(s.database_url, "metrics-node")
    assert s.api("POST", "/api/v1/agent/heartbeat", token=agent, json_body={
        "agent_version": "1.0.0", "uptime_seconds": 5}).status == 200


@pytest.mark.parametrize("processes", [1, 2])
def test_promtool_accepts_server_metrics(tmp_path: Path, processes: int) -> None:
    promtool = _promtool()
    with fresh_database("sqlite", tmp_path) as url, ServerProcess.start(
            url, tmp_path, extra_args=("--processes", str(processes))) as s:
        _traffic(s)
        reply = http("GET", s.url + "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.body.decode()
    for family in ("aami_server_http_requests_total", "aami_server_auth_failures_total",
                   "aami_server_event_loop_lag_seconds"):
        assert f"# TYPE {family}" in text, family
    checked = subprocess.run([promtool, "check", "metrics"], input=reply.body,
                             capture_output=True, timeout=60)
    problems = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0 and not problems.strip(), problems
