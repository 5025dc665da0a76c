"""The real `aami-agent` process: control socket, status, poll --now, /metrics, SIGTERM,
single instance, masked logs, migrate-cron. The server here is unreachable on purpose
(degraded mode); runs against the real server are in test_e2e_*.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TOKEN = "bootstrap-token-must-not-be-logged"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aami.agent.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def running_agent(tmp_path: Path):
    port = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"server: {{url: 'http://127.0.0.1:{free_port()}', timeout: 2s}}\n"
        f"agent: {{hostname: node-x, state_dir: {tmp_path / 'state'}, poll_interval: 1s,\n"
        f"         bootstrap_token_file: null}}\n"
        f"trust: {{keys_dir: {tmp_path / 'keys'}}}\n"
        f"metrics: {{listen: '127.0.0.1:{port}', textfile_dir: null}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aami.agent.cli", "run", "--config", str(config), "--token", TOKEN],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    sock = tmp_path / "state" / "control.sock"
    deadline = time.monotonic() + 15
    while not sock.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "control socket never appeared"
        time.sleep(0.05)
    yield proc, config, port, sock
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_status_poll_metrics_and_clean_sigterm(running_agent, tmp_path: Path) -> None:
    proc, config, port, sock = running_agent
    assert sock.stat().st_mode & 0o777 == 0o600

    status = cli("status", "--json", "--config", str(config))
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["daemon"] == "running" and data["hostname"] == "node-x"
    assert data["registered"] is False and TOKEN not in status.stdout
    assert set(data["loops"]) == {"poll", "schedule", "report", "heartbeat", "control", "metrics"}
    assert data["loops"]["poll"]["restarts"] == 0 and data["loops"]["control"]["last_success"]

    poll = cli("poll", "--now", "--config", str(config))
    assert poll.returncode == 1 and poll.stdout.startswith("poll failed: server unavailable")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        page = resp.read().decode()
    assert "aami_agent_poll_duration_seconds_count" in page
    assert "aami_agent_polls_failed_total" in page
    assert 'aami_agent_loop_restarts_total{loop="heartbeat"} 0' in page

    again = cli("run", "--config", str(config), "--once")
    assert again.returncode == 1 and "another aami-agent is running" in again.stderr

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr
    assert TOKEN not in stderr
    assert not sock.exists()

    offline = cli("status", "--config", str(config))
    assert offline.returncode == 0 and "daemon not running" in offline.stdout


def test_poll_now_without_an_agent(tmp_path: Path) -> None:
    result = cli("poll", "--now", "--state-dir", str(tmp_path))
    assert result.returncode == 1 and "no aami-agent is running" in result.stderr


def test_migrate_cron_and_rollback(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    cron = root / "etc" / "cron.d"
    wants = root / "etc" / "systemd" / "system" / "timers.target.wants"
    cron.mkdir(parents=True)
    wants.mkdir(parents=True)
    (cron / "aami-checks").write_text("* * * * * root /usr/local/bin/aami-run\n")
    (cron / "other-job").write_text("* * * * * root true\n")
    os.symlink("/lib/systemd/system/aami-dynamic-check.timer",
               wants / "aami-dynamic-check.timer")

    done = cli("migrate-cron", "--root", str(root), "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in cron.iterdir()) == [
        "aami-checks.disabled-by-aami-agent", "other-job"]
    assert not (wants / "aami-dynamic-check.timer").is_symlink()
    assert cli("migrate-cron", "--root", str(root), "--state-dir", str(state)).returncode == 0

    back = cli("migrate-cron", "--rollback", "--root", str(root), "--state-dir", str(state))
    assert back.returncode == 0, back.stderr
    assert sorted(p.name for p in cron.iterdir()) == ["aami-checks", "other-job"]
    assert os.readlink(wants / "aami-dynamic-check.timer").endswith("aami-dynamic-check.timer")
