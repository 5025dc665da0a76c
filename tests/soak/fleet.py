"""The soak's moving parts: a PostgreSQL database, the server (`--processes 2`, TLS),
the proxy the agents talk through, and N real `aami-agent run` daemons, each with its
own hostname, state directory, metrics port and process.

Everything listens on 127.0.0.1 only. The script every agent runs appends its
AAMI_EXECUTION_ID to one log: that log is the ground truth of what ran, compared at the
end with what the server stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import PG_ADMIN_DSN, _create_database, _drop_database, _pg_connect
from tests.harness import BIN, free_port, http, run_cli
from tests.pki import make_pki


def pg_connect(dsn: str):  # -> a psycopg2 connection (autocommit)
    return _pg_connect(dsn)


def create_database() -> tuple[str, str]:
    name = _create_database()
    return name, f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"


def restart_postgres() -> None:
    """The machine's cluster, restarted as an operator would (pg_ctlcluster)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)


@dataclass
class Agent:
    hostname: str
    config: Path
    state_dir: Path
    metrics_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, bootstrap: str) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "aami-agent"), "run", "--config", str(self.config),
             "--token", bootstrap], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        self.starts += 1

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def metrics(self) -> str:
        try:
            return http("GET", f"http://127.0.0.1:{self.metrics_port}/metrics",
                        timeout=5).body.decode()
        except OSError:
            return ""


@dataclass
class Site:
    """The server side: database, PKI, server processes, proxy."""

    work: Path
    interval: str
    database: str = ""
    database_url: str = ""
    server_port: int = 0
    proxy_port: int = 0
    server: subprocess.Popen[bytes] | None = None
    proxy: subprocess.Popen[bytes] | None = None
    admin_token: str = ""
    ca: Path = field(default_factory=Path)

    def setup(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = make_pki(self.work)
        self.database, self.database_url = create_database()
        self.server_port, self.proxy_port = free_port(), free_port()
        (self.work / "server.yaml").write_text(
            f"agents: {{poll_interval: {self.interval}, heartbeat_interval: {self.interval}}}\n")
        run_cli("aami-server", "migrate", "--database", self.database_url)
        self.admin_token = run_cli("aami-server", "token", "create", "--role", "admin",
                                   "--name", "soak", "--database",
                                   self.database_url).stdout.strip()

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.server_port}"

    @property
    def agent_url(self) -> str:
        return f"https://127.0.0.1:{self.proxy_port}"

    def start_server(self) -> None:
        log = (self.work / "server.log").open("ab")
        self.server = subprocess.Popen(
            [str(BIN / "aami-server"), "serve", "--config", str(self.work / "server.yaml"),
             "--database", self.database_url, "--listen", f"127.0.0.1:{self.server_port}",
             "--processes", "2", "--tls-cert", str(self.cert), "--tls-key", str(self.key)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_server_ready()

    def wait_server_ready(self, timeout: float = 60) -> None:
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.server is not None
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited: {self.tail('server.log')}")
            try:
                with urllib.request.urlopen(self.server_url + "/health/ready", timeout=2,
                                            context=context) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready: {self.tail('server.log')}")

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(sig)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        # children of a SIGKILLed supervisor stop on their own (PR_SET_PDEATHSIG):
        # wait for the port before starting again
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _listening(self.server_port):
            time.sleep(0.2)

    def start_proxy(self) -> None:
        log = (self.work / "proxy.log").open("ab")
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "tests.soak.proxy", "--listen", str(self.proxy_port),
             "--upstream", self.server_url, "--cert", str(self.cert), "--key", str(self.key),
             "--ca", str(self.ca)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while not _listening(self.proxy_port):
            assert time.monotonic() < deadline, self.tail("proxy.log")
            time.sleep(0.1)

    def hostile(self, on: bool) -> None:
        assert self.proxy is not None
        self.proxy.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def bootstrap_token(self, uses: int) -> str:
        return run_cli("aami-server", "bootstrap-token", "create", "--max-uses", str(uses),
                       "--database", self.database_url).stdout.strip()

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.work / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""

    def teardown(self) -> None:
        for process in (self.proxy, self.server):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self.database:
            _drop_database(self.database)


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (the kernel's socket table)."""
    wanted = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[1] == wanted and parts[3] == "0A":
                return True
    return False


def make_agents(site: Site, count: int, keys_dir: Path, run_log: Path) -> list[Agent]:
    agents = []
    for index in range(count):
        hostname = f"soak-{index:03d}"
        state = site.work / "agents" / hostname
        state.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = state / "agent.yaml"
        config.write_text(
            f"server: {{url: '{site.agent_url}', ca_file: '{site.ca}', timeout: 5s}}\n"
            f"agent: {{hostname: {hostname}, state_dir: '{state}', "
            f"poll_interval: {site.interval}, heartbeat_interval: {site.interval}, "
            "bootstrap_token_file: null}\n"
            f"trust: {{keys_dir: '{keys_dir}'}}\n"
            "executor: {default_timeout: 30s, max_concurrent: 2}\n"
            f"metrics: {{listen: '127.0.0.1:{port}', textfile_dir: null}}\n"
            "logging: {level: info}\n")
        agents.append(Agent(hostname, config, state, port, state / "agent.log"))
    return agents


def publish_soak_script(site: Site, interval: str, run_log: Path) -> None:
    """A publisher key, a signed script that logs its execution id, and a global policy:
    set up with the real CLI, as an operator does."""
    keys = site.work / "keys"
    run_cli("aami", "keys", "generate", "--out", str(keys), "--name", "soak")
    flags = ["--server", site.server_url, "--token", site.admin_token, "--ca-file", str(site.ca)]
    run_cli("aami", "key", "register", str(keys / "soak.pub"), "--name", "soak", *flags)
    script = site.work / "tick.sh"
    script.write_text(f'echo "$AAMI_EXECUTION_ID" >> {run_log}\nsleep 1\necho tick\n')
    run_cli("aami", "script", "sign", str(script), "--key", str(keys / "soak.key"),
            "--name", "tick", "--version", "1.0.0", "--timeout", "20s")
    run_cli("aami", "script", "publish", str(script) + ".signed.json", *flags)
    policy = site.work / "policy.yaml"
    policy.write_text(
        "policies:\n  - {name: tick, script: tick, version: latest, scope: global,\n"
        f"     schedule: {{mode: interval, interval: {interval}}}, timeout: 20s}}\n")
    run_cli("aami", "policy", "apply", str(policy), *flags)
    trusted = site.work / "trusted-keys"
    trusted.mkdir(exist_ok=True)
    (trusted / "soak.pub").write_bytes((keys / "soak.pub").read_bytes())
