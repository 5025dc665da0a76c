"""systemd notify protocol through a real datagram socket standing in for systemd.

The one edge that cannot run here is systemd itself (PID 1 acting on READY=1 and on a
missed watchdog): a unix datagram socket named by NOTIFY_SOCKET receives exactly what
systemd would, and the tests check those messages. The agent is the real daemon
process, or (for the hung-loop case, which needs shrunken limits) the real `Agent`
with its loops under the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from aami.agent import sdnotify
from aami.agent.daemon import Agent
from tests.agent.conftest import InMemoryServer, Publisher, make_config

ROOT = Path(__file__).parents[2]


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@aami-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    sock.settimeout(0.2)
    yield sock, name
    sock.close()


def receive(sock: socket.socket, until: float,
            enough: Callable[[list[str]], bool] | None = None) -> list[str]:
    """Messages until `until`, or sooner once `enough` of them have come."""
    out: list[str] = []
    while time.monotonic() < until and not (enough and enough(out)):
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return out


def test_no_notify_socket_is_a_no_op() -> None:
    assert sdnotify.notify("READY=1", env={}) is False
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "2000000"}) is None


def test_watchdog_period_honours_pid(listener) -> None:
    _, name = listener
    env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"}
    assert sdnotify.watchdog_period(env) == 1.0
    assert sdnotify.watchdog_period({**env, "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert sdnotify.watchdog_period({**env, "WATCHDOG_PID": "1"}) is None


def test_real_daemon_says_ready_feeds_the_watchdog_and_says_stopping(
    listener, tmp_path: Path
) -> None:
    sock, name = listener
    config = tmp_path / "agent.yaml"
    config.write_text(
        "server: {url: 'http://127.0.0.1:9', timeout: 2s}\n"
        f"agent: {{hostname: node-n, state_dir: {tmp_path / 'state'}, poll_interval: 1s,\n"
        "         bootstrap_token_file: null}\n"
        f"trust: {{keys_dir: {tmp_path / 'keys'}}}\n"
        "metrics: {listen: 'off', textfile_dir: null}\n")
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "400000"}  # ping every 0.2s
    proc = subprocess.Popen([sys.executable, "-m", "aami.agent.cli", "run", "--config",
                             str(config)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Pings ~0.2 s apart while every loop is fine; bounded generously, since a
        # loaded machine may take seconds to start the interpreter.
        got = receive(sock, time.monotonic() + 60, lambda m: m.count("WATCHDOG=1") >= 8)
        assert got and got[0].startswith("READY=1\nSTATUS="), got
        assert got.count("WATCHDOG=1") >= 8, got
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in receive(sock, time.monotonic() + 30,
                                       lambda m: "STOPPING=1" in m)
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class HangingServer(InMemoryServer):
    """A bug stand-in: the poll awaits something that never comes, with no timeout."""

    async def get_assignments(self, etag):  # type: ignore[no-untyped-def]
        self._check("assignments")
        await asyncio.Event().wait()


def test_a_hung_loop_stops_the_watchdog(
    listener, tmp_path: Path, publisher: Publisher, monkeypatch, caplog
) -> None:
    sock, name = listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    config = make_config(tmp_path, publisher.keys_dir, loop_stall=0.5)
    config = replace(config, server=replace(config.server, timeout=0.1))
    agent = Agent(config, client=HangingServer())

    async def main() -> list[str]:
        run = asyncio.create_task(agent.run_forever())
        # Until READY (however slow the machine), then 2.5 s: fed while young, then not.
        got = await asyncio.to_thread(receive, sock, time.monotonic() + 30,
                                      lambda m: any(x.startswith("READY=1") for x in m))
        got += await asyncio.to_thread(receive, sock, time.monotonic() + 2.5)
        agent._stop.set()
        await run
        return got

    got = asyncio.run(main())
    assert got[0].startswith("READY=1")
    pings = [m for m in got if m == "WATCHDOG=1"]
    assert 1 <= len(pings) <= 9, got  # fed while young, then starved by the hung poll
    assert "poll made no progress" in caplog.text or "loop(s) poll made no progress" in caplog.text
