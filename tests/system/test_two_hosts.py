"""Two server hosts on one PostgreSQL behind HAProxy (docs/scaling.md), under a real
systemd: agents keep working while one host is stopped and started again, no result
is lost or stored twice, and a change made through one host reaches agents the other
serves within a second plus their poll interval."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from tests.conftest import fresh_database
from tests.harness import free_port, wait_until
from tests.system.nspawn import Container, booted
from tests.system.site import (
    DOCS,
    VERSIONS,
    Release,
    ServerHost,
    Workstation,
    agent_and_server_agree,
    executions,
    install_node,
    target_of,
)

SCRIPT = "ha-check"
POLL_SECONDS = 3  # the group's poll interval, set through the API


def _haproxy_cfg(lb_port: int, ports: list[int]) -> str:
    """The configuration from docs/scaling.md, with this run's addresses."""
    text = (DOCS.parent / "scaling.md").read_text()
    block = text.split("<!-- haproxy-cfg -->", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    block = block.replace("bind :8443", f"bind 127.0.0.1:{lb_port}")
    # HAProxy asks for 2 x maxconn descriptors; these machines cap every process's
    # hard limit at 20,000 (a real Debian host allows 524,288), so fewer here.
    block = block.replace("maxconn 50000", "maxconn 8000")
    block = block.replace("10.0.0.11:8443", f"127.0.0.1:{ports[0]}")
    return block.replace("10.0.0.12:8443", f"127.0.0.1:{ports[1]}")


def _server(box: Container, release: Release, database: str) -> ServerHost:
    host = ServerHost(box, release, free_port())
    host.unpack_and_install(VERSIONS[0], "--key", "/root/usb/release.pub")
    host.configure(database)
    host.start()
    return host


def test_two_server_hosts_behind_haproxy(base_root: Path, release: Release,
                                         tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    with fresh_database("postgresql", tmp_path) as database, \
            booted(f"aami-a-{tag}", base_root) as box_a, \
            booted(f"aami-b-{tag}", base_root) as box_b, \
            booted(f"aami-lb-{tag}", base_root) as lb:
        host_a = _server(box_a, release, database)
        host_b = _server(box_b, release, database)
        host_a.make_admin_token()
        host_b.admin_token = host_a.admin_token  # one database: one token for both

        lb_port = free_port()
        lb.put("/etc/haproxy/haproxy.cfg", _haproxy_cfg(lb_port, [host_a.port,
                                                                 host_b.port]).encode())
        lb.ok("systemctl enable --now haproxy")
        front = ServerHost(lb, release, lb_port)
        front.admin_token = host_a.admin_token
        front.wait_ready()

        workstation = Workstation(release, front)
        token = workstation.publish(SCRIPT, interval="2s")
        group = json.loads(front.get(f"/api/v1/groups?name={workstation.group}").body)
        group_id = next(g for g in group["data"] if g["name"] == workstation.group)["id"]
        assert front.api("PATCH", f"/api/v1/groups/{group_id}",
                         json_body={"poll_interval_seconds": POLL_SECONDS}).status == 200

        with booted(f"aami-h1-{tag}", base_root) as n1, \
                booted(f"aami-h2-{tag}", base_root) as n2:
            nodes = [n1, n2]
            targets = {}
            for node in nodes:
                install_node(node, front, token)
                wait_until(lambda n=node: target_of(front, n.name) is not None, 60,
                           "registration through the load balancer")
                targets[node.name] = target_of(front, node.name)["id"]  # type: ignore[index]

            def runs(node: Container) -> list[dict[str, object]]:
                return executions(host_b, targets[node.name])

            for node in nodes:
                wait_until(lambda n=node: len(runs(n)) >= 1, 60, "a first run")

            # One host down: agents keep polling and reporting through the other.
            box_a.ok("systemctl stop aami-server")
            before = {n.name: len(runs(n)) for n in nodes}
            for node in nodes:
                wait_until(lambda n=node: len(runs(n)) >= before[n.name] + 3, 60,
                           "runs reported while host A is stopped")
            box_a.ok("systemctl start aami-server")
            host_a.wait_ready()

            # A new version published through host A only, with host B serving alone:
            # the agents must pick it up from B, which learns it from the database.
            changed_at = time.monotonic()
            Workstation(release, host_a).sign_and_publish(SCRIPT, "1.1.0")
            box_a.ok("systemctl stop aami-server")
            for node in nodes:
                wait_until(lambda n=node: any(e["script_version"] == "1.1.0" for e in runs(n)),
                           60, "the new version runs, served by host B")
            reached = time.monotonic() - changed_at
            box_a.ok("systemctl start aami-server")
            host_a.wait_ready()

            # Nothing lost, nothing doubled: what each agent ran is what the server holds.
            for node in nodes:
                wait_until(lambda n=node: agent_and_server_agree(n, host_b, targets[n.name]),
                           60, "the server holds every run the agent made, once")
        print(f"\ntwo hosts behind HAProxy: a change through host A ran on both nodes, "
              f"served by host B, after {reached:.1f}s (poll {POLL_SECONDS}s + interval 2s)")
        assert reached < POLL_SECONDS + 2 + 15
