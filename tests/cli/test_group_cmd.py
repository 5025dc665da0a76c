"""What an operator needs before bootstrap tokens, through the real `aami` and a real
server: a group, then a token that enrols new nodes into it (docs/install.md)."""

from __future__ import annotations

import uuid

from tests.cli.conftest import aami
from tests.harness import ServerProcess, http


def test_group_then_bootstrap_token_enrols_a_node_into_it(shared_server: ServerProcess) -> None:
    env = {"AAMI_SERVER": shared_server.url, "AAMI_TOKEN": shared_server.token("admin")}
    name = f"rack-{uuid.uuid4().hex[:8]}"
    created = aami("group", "create", name, "--priority", "5", env=env)
    assert created.code == 0, created.err
    assert created.out.startswith(f"created group {name} (id ")
    again = aami("group", "create", name, env=env)
    assert again.code == 1 and "already exists" in again.err
    listed = aami("group", "list", env=env)
    assert f"\t{name}\tpriority 5" in listed.out

    made = aami("bootstrap-token", "create", "--group", name, "--max-uses", "2",
                "--expires", "1h", env=env)
    assert made.code == 0, made.err
    token = made.out.strip()
    assert len(made.out.splitlines()) == 1 and token
    host = f"node-{uuid.uuid4().hex[:8]}"
    reply = http("POST", f"{shared_server.url}/api/v1/agent/register", token=token,
                 json_body={"hostname": host, "agent_version": "1.0", "system_info": {}})
    assert reply.status == 201, reply.body
    target = shared_server.api("GET", f"/api/v1/targets?hostname={host}").json["data"][0]
    assert target["groups"] == [name]


def test_bootstrap_token_for_a_missing_group_and_bad_flags(shared_server: ServerProcess) -> None:
    env = {"AAMI_SERVER": shared_server.url, "AAMI_TOKEN": shared_server.token("admin")}
    missing = aami("bootstrap-token", "create", "--group", f"nope-{uuid.uuid4().hex[:6]}",
                   env=env)
    assert missing.code == 1 and "nope-" in missing.err
    bad = aami("bootstrap-token", "create", "--expires", "soon", env=env)
    assert bad.code == 2 and "--expires" in bad.err
    uses = aami("bootstrap-token", "create", "--max-uses", "0", env=env)
    assert uses.code == 2 and "--max-uses" in uses.err


def test_bootstrap_token_for_one_node(shared_server: ServerProcess) -> None:
    env = {"AAMI_SERVER": shared_server.url, "AAMI_TOKEN": shared_server.token("admin")}
    host = f"node-{uuid.uuid4().hex[:8]}"
    made = aami("bootstrap-token", "create", "--hostname", host, env=env)
    assert made.code == 0, made.err
    body = {"agent_version": "1.0", "system_info": {}}
    url = f"{shared_server.url}/api/v1/agent/register"
    other = http("POST", url, token=made.out.strip(), json_body={**body, "hostname": "x" + host})
    assert other.status == 403 and other.json["code"] == "HOSTNAME_NOT_ALLOWED"
    mine = http("POST", url, token=made.out.strip(), json_body={**body, "hostname": host})
    assert mine.status == 201, mine.body
    bad = aami("bootstrap-token", "create", "--hostname", "no such host", env=env)
    assert bad.code == 2 and bad.err.strip() == (
        "error: --hostname: 'no such host' is not a hostname (letters, digits, '.' "
        "and '-', at most 253 characters)"), bad.err
    # An empty value (an unset $NODE) is refused too, never a token for any node.
    empty = aami("bootstrap-token", "create", "--hostname", "", env=env)
    assert empty.code == 2 and "--hostname: '' is not a hostname" in empty.err, empty.err


def test_a_target_made_in_advance_is_claimed_by_its_own_token(
    shared_server: ServerProcess,
) -> None:
    env = {"AAMI_SERVER": shared_server.url, "AAMI_TOKEN": shared_server.token("admin")}
    group = f"rack-{uuid.uuid4().hex[:8]}"
    host = f"node-{uuid.uuid4().hex[:8]}"
    assert aami("group", "create", group, env=env).code == 0
    made = aami("target", "create", host, "--group", group, "--label", "rack=7", env=env)
    assert made.code == 0, made.err
    assert made.out.startswith(f"created target {host} (id ") and \
        f"aami bootstrap-token create --hostname {host}" in made.out
    target = shared_server.api("GET", f"/api/v1/targets?hostname={host}").json["data"][0]
    assert target["groups"] == [group] and target["labels"] == {"rack": "7"}
    again = aami("target", "create", host, env=env)
    assert again.code == 1 and again.err.strip() == f"error: target {host!r} already exists"
    bad = aami("target", "create", host, "--label", "norack", env=env)
    assert bad.code == 2 and "--label: expected KEY=VALUE, got 'norack'" in bad.err
    token = aami("bootstrap-token", "create", "--hostname", host, env=env).out.strip()
    reply = http("POST", f"{shared_server.url}/api/v1/agent/register", token=token,
                 json_body={"hostname": host, "agent_version": "1.0", "system_info": {}})
    assert reply.status == 201 and reply.json["target_id"] == target["id"], reply.body
