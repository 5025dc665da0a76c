"""The real `aami-agent run` daemon against the real server, for longer than one cycle:
the class of fault a `--once` test cannot see (a loop that dies after its first turn)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
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


def client_ports(pid: int, server_port: int) -> set[int]:
    """Local ports of `pid`'s TCP connections to `server_port` (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_polls_and_heartbeats_reuse_one_connection(fast_site: Site, tmp_path: Path) -> None:
    """Issue 11, item 8: one kept-alive connection per agent, not one per request."""
    log = tmp_path / "agent.log"
    agent = start_agent(fast_site, tmp_path / "state", log)
    seen: set[int] = set()
    samples: list[set[int]] = []
    try:
        wait_until(lambda: agent_status(fast_site).get("uptime_seconds") is not None,
                   timeout=30, what="the first heartbeat")
        # Sample for at least 5 s (~5 polls and ~5 heartbeats at 1 s), and on until the
        # server has seen heartbeats 4 s apart: on a loaded CI machine 5 s of wall
        # time can hold only 3 of them.
        started = time.monotonic()
        beats_seen = False
        while time.monotonic() - started < 5 or not beats_seen:
            assert time.monotonic() - started < 60, "no heartbeat 4 s after the first"
            samples.append(client_ports(agent.pid, fast_site.server.port))
            seen |= samples[-1]
            time.sleep(0.1)
            if len(samples) % 10 == 0:
                beats_seen = (agent_status(fast_site).get("uptime_seconds") or 0) >= 4
    finally:
        stop(agent, log)
    assert len(seen) == 1, f"the agent opened {len(seen)} connections: {sorted(seen)}"
    # Open between requests too (a connection per request would be absent most of
    # the time, which a sampled set alone could not tell from one kept connection).
    assert sum(1 for ports in samples if ports) >= 0.9 * len(samples), samples
