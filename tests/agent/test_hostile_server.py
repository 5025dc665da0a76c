"""A hostile or broken server cannot stop a node (issue 11, item 4).

The real HTTP client, then the real `aami-agent run` daemon process, against a real
hostile server on 127.0.0.1 (tests/agent/hostile.py): every fault is one failed
request with a one-line reason and a counter, and the agent carries on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from aami.agent.client import AgentClientError, HttpAgentClient, ServerUnavailable
from aami.agent.executor import ExecutionRequest, execute
from tests.agent.hostile import GOOD_TOKEN, MODES, HostileServer, free_port

ROOT = Path(__file__).parents[2]
TIMEOUT = 1.0


def client(url: str) -> HttpAgentClient:
    return HttpAgentClient(url, timeout=TIMEOUT, max_response_bytes=1_000_000,
                           token=GOOD_TOKEN)


CALLS = {
    "assignments": lambda c: c.get_assignments(None),
    "heartbeat": lambda c: c.heartbeat({"agent_version": "1", "uptime_seconds": 1}),
    "register": lambda c: c.register("boot", "node-h", "1", {}),
    "executions": lambda c: c.post_executions([{"id": "x"}]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_fault_is_one_client_error_with_a_one_line_reason(mode: str, call: str) -> None:
    with HostileServer(mode) as server:
        started = time.monotonic()
        with pytest.raises(AgentClientError) as caught:
            asyncio.run(CALLS[call](client(server.url)))
        elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "\n" not in message and 0 < len(message) < 400, message
    # A hard deadline (not a 60 s hang), with room for a loaded machine.
    assert elapsed < 2 * TIMEOUT + 5, f"{mode}: took {elapsed:.1f}s"


def test_requests_share_one_kept_alive_connection() -> None:
    async def main(c: HttpAgentClient) -> None:
        for _ in range(3):
            await c.get_assignments(None)
            await c.heartbeat({"agent_version": "1", "uptime_seconds": 1})
        await c.post_executions([{"id": "x"}])

    with HostileServer("good") as server:
        c = client(server.url)
        asyncio.run(main(c))
        assert server.connections == 1 and c.connections_opened == 1
        assert server.requests["/api/v1/agent/heartbeat"] == 3


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error() -> None:
    async def main(c: HttpAgentClient, server: HostileServer) -> None:
        for sent in range(1, 4):
            await c.heartbeat({"agent_version": "1", "uptime_seconds": 1})
            deadline = time.monotonic() + 10
            while server.closed < sent:  # the server has closed the idle connection
                assert time.monotonic() < deadline, "the server never closed it"
                await asyncio.sleep(0.01)

    with HostileServer("good") as server:
        server.close_after_answer = True
        asyncio.run(main(client(server.url), server))
        assert server.connections == 3


def test_broken_reused_connection_retries_only_what_is_safe() -> None:
    """The second request on a connection reaches the server and gets no answer: a GET
    and an executions batch (idempotent by id) are sent again on a fresh connection; a
    heartbeat is not (it may have been recorded), it just fails."""
    async def first_then(c: HttpAgentClient, call: str) -> None:
        await c.get_config()
        await CALLS[call](c)

    for call, retried in (("assignments", True), ("executions", True), ("heartbeat", False)):
        with HostileServer("good") as server:
            server.drop_reused = True
            c = client(server.url)
            if retried:
                asyncio.run(first_then(c, call))
                assert c.connections_opened == 2, call
            else:
                with pytest.raises(ServerUnavailable, match="RemoteDisconnected"):
                    asyncio.run(first_then(c, call))
                assert c.connections_opened == 1


def test_tls_failure_is_a_client_error() -> None:
    # Plain HTTP where the agent expects TLS. Depending on timing the handshake fails
    # with OpenSSL's complaint, the plain server resets the connection, or it waits for
    # a request line that never comes and the handshake times out: each way one failed
    # request with a one-line reason, never a crash.
    with HostileServer("good") as server, pytest.raises(
            ServerUnavailable, match=r"(?i)ssl|reset|closed|eof|handshake"):
        asyncio.run(client(server.url.replace("http:", "https:")).get_assignments(None))


def test_a_nul_or_unencodable_parameter_fails_the_run_not_the_runner() -> None:
    for value, words in (("a\0b", "NUL"), ("\ud800", "not encodable")):
        req = ExecutionRequest("6f1c1d52-0d7e-4d47-9a57-1f6f0b8d0010", "s", "1.0.0",
                               b"echo hi\n", "bash", {"x": value}, 10)
        result = asyncio.run(execute(req, output_limit=1000, kill_grace=1))
        assert not result.success and result.exit_code is None
        assert result.error_message and words in result.error_message
        assert "AAMI_PARAM_X" in result.error_message


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aami.agent.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_real_daemon_survives_every_fault_and_recovers(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = tmp_path / "agent.yaml"
    log = tmp_path / "agent.log"
    with HostileServer("good") as server:
        config.write_text(
            f"server: {{url: '{server.url}', timeout: 1s}}\n"
            f"agent: {{hostname: node-h, state_dir: {tmp_path / 'state'}, poll_interval: 1s,\n"
            "         heartbeat_interval: 1s, bootstrap_token_file: null}\n"
            f"trust: {{keys_dir: {tmp_path / 'keys'}}}\n"
            f"metrics: {{listen: '127.0.0.1:{metrics_port}', textfile_dir: null}}\n")
        with open(log, "wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "aami.agent.cli", "run", "--config", str(config),
                 "--token", "bootstrap-abcdef"], cwd=ROOT, stdout=out, stderr=out)
        try:
            _exercise(server, config, agent)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                        timeout=5) as resp:
                page = resp.read().decode()
            failed = {line.split()[0]: float(line.split()[1]) for line in page.splitlines()
                      if line.startswith("aami_agent_") and "failed_total" in line}
            assert failed["aami_agent_polls_failed_total"] >= len(MODES)
            assert failed["aami_agent_heartbeats_failed_total"] >= 1
            assert "aami_agent_loop_restarts_total" in page
            assert all(line.endswith(" 0") for line in page.splitlines()
                       if line.startswith("aami_agent_loop_restarts_total{"))
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert agent.returncode == 0, text
    assert "Traceback" not in text, text
    assert "RecursionError" not in text or "nested too deeply" in text


def _exercise(server: HostileServer, config: Path, agent: subprocess.Popen[bytes]) -> None:
    from tests.harness import wait_until

    wait_until(lambda: server.requests["/api/v1/agent/heartbeat"] >= 1, timeout=20,
               what="the agent to register and beat")
    for mode in MODES:
        server.mode = mode
        poll = cli("poll", "--now", "--config", str(config))
        assert poll.returncode == 1, (mode, poll.stdout, poll.stderr)
        assert poll.stdout.startswith("poll failed: "), (mode, poll.stdout)
        assert poll.stdout.count("\n") == 1, (mode, poll.stdout)  # one line
        assert agent.poll() is None, f"the agent died in mode {mode}"
    server.mode = "good"
    beats = server.requests["/api/v1/agent/heartbeat"]
    poll = cli("poll", "--now", "--config", str(config))
    assert poll.returncode == 0 and poll.stdout.startswith("poll ok"), poll
    wait_until(lambda: server.requests["/api/v1/agent/heartbeat"] >= beats + 2, timeout=20,
               what="heartbeats after the faults")
    # Heartbeats carry the poll counters since the process started (issue 11, item 6).
    last = server.bodies[-1]
    assert last["polls_total"] >= len(MODES) + 1 and last["polls_failed"] >= len(MODES)
    assert last["polls_total"] > last["polls_failed"]
    status = json.loads(cli("status", "--json", "--config", str(config)).stdout)
    assert all(loop["restarts"] == 0 for loop in status["loops"].values()), status["loops"]
