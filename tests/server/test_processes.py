"""`aami-server serve --processes N`: N real processes on one port (SO_REUSEPORT).

Checked from outside, as an operator would: the kernel's socket table shows N
listening sockets on the port, each owned by a different child; requests on fresh
connections all succeed and `/metrics` counts them all whichever process answers;
a child killed with SIGKILL is replaced; SIGTERM to the parent stops everything
with status 0; a child that cannot start makes the parent exit non-zero.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.harness import (
    BIN,
    ServerProcess,
    child_pids,
    free_port,
    http,
    listening_sockets,
    socket_inodes,
    wait_until,
)


def _health_count(server: ServerProcess) -> float:
    text = http("GET", server.url + "/metrics").body.decode()
    found = re.search(r'aami_server_http_requests_total\{method="GET",route="/health",'
                      r'status="200"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_processes_share_the_port_and_are_supervised(database_url: str,
                                                     tmp_path: Path) -> None:
    with ServerProcess.start(database_url, tmp_path, extra_args=("--processes", "3")) as server:
        parent = server.process.pid
        wait_until(lambda: server.log().count("is listening") == 3, 60, "three processes listening")
        children = child_pids(parent)
        listening = listening_sockets(server.port)
        assert len(children) == 3 and len(listening) == 3
        # Each child holds its own listening socket on the shared port.
        owners = {pid for pid in children if socket_inodes(pid) & listening}
        assert owners == children

        for _ in range(60):  # urllib opens a new connection each time
            assert http("GET", server.url + "/health").status == 200
        # The sum over all processes, whichever one answered the scrape.
        assert _health_count(server) >= 60

        victim = sorted(children)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: server.log().count("is listening") == 4, 60, "a replacement listening")
        assert victim not in child_pids(parent) and len(child_pids(parent)) == 3
        assert len(listening_sockets(server.port)) == 3
        assert http("GET", server.url + "/health/ready").status == 200
        assert "was killed by SIGKILL; restarting it" in server.log()

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=40) == 0
        assert not child_pids(parent)
        assert not listening_sockets(server.port)


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "aami-server"), "serve", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_a_port_in_use_is_refused_once_even_by_a_reuseport_listener(tmp_path: Path) -> None:
    # Without the supervisor's own check, children binding with SO_REUSEPORT would
    # silently share the port with this listener and take part of its traffic.
    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        result = _serve("--processes", "2", "--listen", f"127.0.0.1:{port}",
                        "--database", f"sqlite:///{tmp_path / 'aami.db'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"aami-server: error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_process_that_cannot_start_stops_the_others(tmp_path: Path) -> None:
    # Nothing listens on port 1: every process fails before it is ready.
    result = _serve("--processes", "2", "--listen", f"127.0.0.1:{free_port()}",
                    "--database", "postgresql://postgres@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "while starting; stopping the others" in result.stderr


def test_a_process_stopped_alone_is_restarted_and_none_outlives_the_supervisor(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'aami.db'}"
    with ServerProcess.start(url, tmp_path, extra_args=("--processes", "2")) as server:
        parent = server.process.pid
        wait_until(lambda: server.log().count("is listening") == 2, 60, "two processes")
        first, second = sorted(child_pids(parent))
        os.kill(first, signal.SIGTERM)  # an operator recycling one process
        wait_until(lambda: server.log().count("is listening") == 3, 60, "a replacement")
        assert "exited with status 0; restarting it" in server.log()
        children = child_pids(parent)
        assert second in children and first not in children and len(children) == 2

        server.process.kill()  # the supervisor dies without a word
        server.process.wait(timeout=10)
        # PR_SET_PDEATHSIG: the kernel tells the children, which stop and free the port.
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
                   20, "the orphaned processes to stop")
        wait_until(lambda: not listening_sockets(server.port), 30, "the port to be free")


def test_processes_must_be_positive(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN / "aami-server"), "serve", "--processes", "0"],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "aami-server: error: --processes: must be at least 1, got 0"
