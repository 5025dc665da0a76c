"""Many fresh nodes, one after the other, each installed with the documented
command against one server under systemd: the install success rate (seed target
99 %), and the agent's watchdog under a real systemd."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import free_port, wait_until
from tests.system.nspawn import Container, ContainerError, booted
from tests.system.site import (
    REPO,
    VERSIONS,
    Release,
    ServerHost,
    Workstation,
    install_node,
    target_of,
)

NODES = 20


@pytest.fixture(scope="module")
def server(base_root: Path, release: Release) -> Iterator[tuple[ServerHost, str]]:
    with booted(f"aami-fleet-{uuid.uuid4().hex[:6]}", base_root) as box:
        host = ServerHost(box, release, free_port())
        host.unpack_and_install(VERSIONS[0], "--key", "/root/usb/release.pub")
        host.configure(None)
        host.start()
        host.make_admin_token()
        token = Workstation(release, host).publish("fleet-check")
        yield host, token


def _install_one(base: Path, host: ServerHost, token: str) -> tuple[bool, str, Container]:
    node = Container(f"aami-n{uuid.uuid4().hex[:8]}", base)
    try:
        node.start()
        install_node(node, host, token)
        wait_until(lambda: target_of(host, node.name) is not None, 60, "registration")
        active = node.run("systemctl is-active aami-agent").out.strip()
        return active == "active", active, node
    except (ContainerError, AssertionError) as exc:
        return False, str(exc)[-2000:], node


def test_twenty_fresh_nodes_in_a_row(base_root: Path, server: tuple[ServerHost, str]) -> None:
    host, token = server
    results: list[tuple[bool, str]] = []
    started = time.monotonic()
    stopping: list[Container] = []
    try:
        for _ in range(NODES):
            ok, detail, node = _install_one(base_root, host, token)
            results.append((ok, f"{node.name}: {detail}"))
            node.stop(wait=False)  # shut down while the next one boots
            stopping.append(node)
    finally:
        for node in stopping:
            node.reap()
    succeeded = sum(ok for ok, _ in results)
    elapsed = time.monotonic() - started
    print(f"\nagent install on {NODES} fresh nodes: {succeeded}/{NODES} succeeded "
          f"({100 * succeeded / NODES:.0f} %), {elapsed:.0f}s, {elapsed / NODES:.1f}s per node")
    failures = [detail for ok, detail in results if not ok]
    assert not failures, failures[0]


def test_a_stopped_agent_is_killed_by_the_watchdog_and_restarted(
    base_root: Path, server: tuple[ServerHost, str]
) -> None:
    unit = (REPO / "systemd/aami-agent.service").read_text()
    assert "WatchdogSec=" in unit and "Type=notify" in unit
    host, token = server
    with booted(f"aami-wd-{uuid.uuid4().hex[:6]}", base_root) as node:
        install_node(node, host, token)
        wait_until(lambda: target_of(host, node.name) is not None, 60, "registration")
        # A site may shorten the watchdog in a drop-in; the test does, to wait 5 s, not 60.
        node.put("/etc/systemd/system/aami-agent.service.d/watchdog.conf",
                 b"[Service]\nWatchdogSec=5s\n")
        node.ok("systemctl daemon-reload && systemctl restart aami-agent")
        pid = node.main_pid("aami-agent")
        restarts = int(node.ok("systemctl show -P NRestarts aami-agent"))
        # Every process of the unit stopped: nothing answers the watchdog any more.
        node.ok("systemctl kill --signal=SIGSTOP aami-agent")
        wait_until(lambda: int(node.ok("systemctl show -P NRestarts aami-agent")) > restarts,
                   60, "systemd restarts the hung agent")
        wait_until(lambda: node.run("systemctl is-active aami-agent").out.strip() == "active",
                   30, "the agent runs again")
        assert node.main_pid("aami-agent") != pid
        journal = node.run("journalctl -b -u aami-agent --no-pager").out
        assert "Watchdog timeout" in journal
