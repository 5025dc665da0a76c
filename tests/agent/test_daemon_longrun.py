"""The real `aami-agent run` daemon against the real server, for longer than one cycle:
the class of fault a `--once` test cannot see (a loop that dies after its first turn)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.realserver import Site, site
from tests.harness import BIN, wait_until

FAST_SERVER = "agents: {poll_interval: 1s, heartbeat_interval: 1s}\n"


@pytest.fixture
def fast_site(tmp_path: Path) -> Iterator[Site]:
    with site(tmp_path / "site", server_config=FAST_SERVER) as the_site:
        yield the_site


def start_agent(s: Site, state: Path, log: Path, *extra: str,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import os

    config = s.agent_config(state)
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "aami-agent"), "run", "--config", str(config),
             "--token", s.bootstrap_token(), *extra],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def agent_status(s: Site) -> dict:
    """The node's `agent_status` as the server shows it ({} before the first heartbeat)."""
    reply = s.server.api("GET", "/api/v1/targets?limit=10")
    assert reply.status == 200, reply.body
    rows = reply.json["data"]
    return (rows[0].get("agent_status") or {}) if rows else {}


def stop(agent: subprocess.Popen[bytes], log: Path) -> str:
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert agent.returncode == 0, text
    return text


def test_heartbeats_keep_coming_while_the_daemon_runs(fast_site: Site, tmp_path: Path) -> None:
    """Issue 11: the heartbeat loop died after its first beat; the node went stale."""
    log = tmp_path / "agent.log"
    agent = start_agent(fast_site, tmp_path / "state", log)
    try:
        wait_until(lambda: agent_status(fast_site).get("uptime_seconds") is not None,
                   timeout=30, what="the first heartbeat")
        wait_until(lambda: (agent_status(fast_site).get("uptime_seconds") or 0) >= 4,
                   timeout=30, what="heartbeats after the first")
        status = json.loads(subprocess.run(
            [str(BIN / "aami-agent"), "status", "--json", "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, timeout=30, check=True).stdout)
        assert status["registered"] is True
        # The real server accepted every heartbeat, poll counters included (no 400s).
        assert "heartbeat failed" not in log.read_text(errors="replace")
    finally:
        if agent.poll() is None:
            text = stop(agent, log)
            assert "Traceback" not in text, text
