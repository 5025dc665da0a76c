"""The whole operator story under a real systemd (PID 1 in nspawn containers),
exactly as docs/install.md tells a site to do it:

server host: unpack the signed bundle, `install.sh --key`, TLS and a port in
server.yaml (PostgreSQL through a drop-in), `systemctl enable --now aami-server`, the
first admin token as the service user, a login to the web UI; workstation: the `aami`
binary registers the publisher key, signs and publishes a script, makes a group, a
policy and a bootstrap token; node: the documented install (installer checked against
the pinned release key), the agent registers and runs the script as its run_as user.
Then restarts, SIGKILL, an upgrade and a rollback, `systemd-analyze security` on the
live units, and the documented uninstall.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.harness import free_port, wait_until
from tests.system.nspawn import Container, booted
from tests.system.site import (
    VERSIONS,
    Release,
    ServerHost,
    Workstation,
    agent_and_server_agree,
    docs_block,
    executions,
    install_node,
    target_of,
)
from tests.web.helpers import UiClient

SCRIPT = "whoami-check"


@dataclass
class Site:
    server: ServerHost
    node: Container
    token: str
    target: dict[str, object]


def _name(role: str) -> str:
    return f"aami-{role}-{uuid.uuid4().hex[:6]}"


@contextmanager
def running_site(backend: str, base: Path, release: Release, tmp_path: Path
                 ) -> Iterator[Site]:
    with ExitStack() as stack:
        database = None
        if backend == "postgresql":
            # The host's PostgreSQL, reached over the shared network: a fresh database.
            database = stack.enter_context(fresh_database("postgresql", tmp_path))
        box = stack.enter_context(booted(_name("srv"), base))
        server = ServerHost(box, release, free_port())
        out = server.unpack_and_install(VERSIONS[0], "--key", "/root/usb/release.pub")
        assert "aami 0.1.0 installed under /" in out
        # The unit runs as User=aami: its configuration must be readable by it.
        assert box.ok("stat -c '%U:%G %a' /etc/aami/server.yaml").strip() == "root:aami 640"
        server.configure(database)
        server.start()
        server.make_admin_token()
        expected = database.rsplit("@", 1)[-1] if database else "/var/lib/aami-server/aami.db"
        assert expected in server.token_stderr  # says which database it opened

        ui = UiClient(server.url)
        _login_over_tls(ui, server)

        token = Workstation(release, server).publish(SCRIPT)
        node = stack.enter_context(booted(_name("node"), base))
        out = install_node(node, server, token)
        assert "verified: release manifest signed by /root/release.pub" in out
        hostname = node.name
        wait_until(lambda: target_of(server, hostname) is not None, 60, "the node registers")
        target = target_of(server, hostname)
        assert target is not None
        yield Site(server, node, token, target)


def _login_over_tls(ui: UiClient, server: ServerHost) -> None:
    """A form POST to the login page, with the site CA (the UI client speaks https)."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(server.release.ca))
    handlers = [h for h in ui.opener.handlers if not isinstance(h, urllib.request.HTTPSHandler)]
    ui.opener = urllib.request.build_opener(*handlers, urllib.request.HTTPSHandler(context=context))
    ui.login(server.admin_token)
    page = ui.get("/ui/")
    assert page.status == 200 and "<html" in page.text.lower()


def _successful_run(site: Site, after: int = 0, timeout: float = 90) -> list[dict[str, object]]:
    """Wait for more than `after` runs of the script on the node, all successful."""
    found: list[dict[str, object]] = []

    def more() -> bool:
        nonlocal found
        found = [e for e in executions(site.server, site.target["id"])
                 if e["script_name"] == SCRIPT]
        return len(found) > after

    wait_until(more, timeout, f"a run of {SCRIPT} after {after}")
    return found


def _agent_secrets(node: Container) -> list[str]:
    state = json.loads(node.path("/var/lib/aami-agent/state.json").read_text())
    return [str(state["agent_token"])]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_install_publish_register_and_run_under_systemd(
    backend: str, base_root: Path, release: Release, tmp_path: Path
) -> None:
    started = time.monotonic()
    with running_site(backend, base_root, release, tmp_path) as site:
        runs = _successful_run(site)
        run = runs[0]
        assert run["success"] is True and run["exit_code"] == 0, json.dumps(run)
        assert f"ran as aami-runner on {site.node.name}" in str(run["stdout"])
        journal = site.node.run("journalctl -b -u aami-agent --no-pager -o cat").out
        assert f"running {SCRIPT} 1.0.0" in journal
        assert f"registered as target {site.target['id']}" in journal
        for secret in [site.token, *_agent_secrets(site.node)]:
            assert secret not in journal
        server_journal = site.server.journal("aami-server")
        assert site.server.admin_token not in server_journal
        assert site.token not in server_journal
    print(f"\n[{backend}] install, publish, register and first run: "
          f"{time.monotonic() - started:.1f}s")


def test_restarts_kill_upgrade_rollback_security_and_uninstall(
    base_root: Path, release: Release, tmp_path: Path
) -> None:
    with running_site("sqlite", base_root, release, tmp_path) as site:
        node, server = site.node, site.server
        before = len(_successful_run(site))

        # systemctl restart: a new process, registration kept, runs go on.
        pid = node.main_pid("aami-agent")
        node.ok("systemctl restart aami-agent")
        assert node.main_pid("aami-agent") not in (0, pid)
        node.ok("aami-agent poll --now --config /etc/aami/agent.yaml")

        # SIGKILL of the main process: systemd starts it again (Restart=always).
        pid = node.main_pid("aami-agent")
        node.ok("systemctl kill --signal=KILL --kill-whom=main aami-agent")
        wait_until(lambda: node.main_pid("aami-agent") not in (0, pid), 30,
                   "systemd restarts the killed agent")
        after_kill = _successful_run(site, after=before)
        assert all(e["success"] for e in after_kill)
        # Nothing lost, nothing doubled: once the spool is empty, the server holds
        # exactly the runs the agent counted, each once.
        # (Compared until they agree: a run may start between the two reads.)
        wait_until(lambda: agent_and_server_agree(node, server, site.target["id"]), 60,
                   "the server holds every run the agent made, once")

        # The server too: SIGKILL, restarted (Restart=on-failure), data kept.
        pid = server.box.main_pid("aami-server")
        server.box.ok("systemctl kill --signal=KILL --kill-whom=main aami-server")
        wait_until(lambda: server.box.main_pid("aami-server") not in (0, pid), 30,
                   "systemd restarts the killed server")
        server.wait_ready()
        assert server.get("/api/v1/groups").status == 200  # the admin token survived

        # Upgrade to the next bundle (key from /etc/aami/release.pub), then roll back.
        out = server.unpack_and_install(VERSIONS[1])
        assert f"aami {VERSIONS[1]} installed" in out and "kept for --rollback" in out
        assert server.box.ok("cat /opt/aami/current/VERSION").strip() == VERSIONS[1]
        server.wait_ready()
        out = server.box.ok("/opt/aami/current/install.sh --rollback")
        assert "rolled back" in out
        assert server.box.ok("cat /opt/aami/current/VERSION").strip() == VERSIONS[0]
        server.wait_ready()
        assert server.get("/api/v1/groups").status == 200

        # The live units, as systemd itself rates them (docs/install.md section 8).
        for box, unit, limit in ((server.box, "aami-server", 2.0), (node, "aami-agent", 4.0)):
            score = _exposure(box.ok(f"systemd-analyze security {unit} --no-pager"))
            print(f"\nsystemd-analyze security {unit} (live): {score}")
            assert score <= limit

        # The documented uninstall, node then server, as written.
        node.ok("set -e\n" + docs_block("uninstall-node"))
        assert node.run("systemctl cat aami-agent").code != 0
        assert not node.path("/usr/bin/aami-agent").exists()
        server.box.ok("set -e\n" + docs_block("uninstall-server"))
        assert server.box.run("systemctl cat aami-server").code != 0
        assert not server.box.path("/opt/aami").exists()
        assert server.box.run("id aami").code != 0


def _exposure(output: str) -> float:
    # "→ Overall exposure level for aami-server.service: 1.1 OK :-)"
    line = [x for x in output.splitlines() if "Overall exposure level" in x][-1]
    return float(line.split(":")[1].split()[0])
