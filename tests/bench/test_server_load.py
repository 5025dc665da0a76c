"""The server load benchmark itself runs end to end (a few agents, short periods).

It keeps `make bench-server` from rotting between the runs whose figures are
quoted in docs/scaling.md, and it is one more test of two real server processes
sharing one PostgreSQL: every simulated agent registers, downloads its scripts,
polls with its ETag, heart-beats and reports, against either process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import server_load


@pytest.mark.slow
@pytest.mark.parametrize("layout", [[], ["--shared-port"]], ids=["two-ports", "shared-port"])
def test_a_short_run_reports_every_endpoint_without_errors(tmp_path: Path,
                                                           layout: list[str]) -> None:
    # two ports: a load balancer's view; shared port: `serve --processes 2`.
    out = tmp_path / "figures.json"
    status = server_load.main([
        "--agents", "40", "--duration", "14s", "--ramp", "2s", "--poll", "3s",
        "--heartbeat", "3s", "--report", "4s", "--server-processes", "2",
        "--p99-budget", "2000ms", "--json", str(out), *layout])
    result = json.loads(out.read_text())
    assert status == 0, result["error_samples"]
    assert result["registered"] == 40 and result["errors"] == 0
    endpoints = result["endpoints"]
    assert set(endpoints) == {"register", "script", "assignments", "heartbeat", "executions"}
    # Polls after the first come back 304: the ETag path is what the load is made of.
    assert result["statuses"].get("assignments 304", 0) > 0
    assert endpoints["executions"]["requests"] >= 40
    assert len(result["servers"]) == 2 and all(s["rss_mb"] > 0 for s in result["servers"])
    assert result["server_side_mean_ms"]["POST /api/v1/agent/heartbeat"]["count"] > 0
