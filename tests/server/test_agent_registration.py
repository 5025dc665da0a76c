"""Registration and token rotation through real server processes, on both databases."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from aami.server.models import AgentStatus, BootstrapToken, Target, TargetGroup
from tests.harness import ServerProcess, http, run_cli, wait_until
from tests.server.test_agent_fixtures import agent, create_group, direct_db, register

HEARTBEAT = {"agent_version": "1.0.0", "uptime_seconds": 1}


def _register(server: ServerProcess, token: str | None, hostname: str):  # type: ignore[no-untyped-def]
    return http("POST", server.url + "/api/v1/agent/register", token=token,
                json_body={"hostname": hostname, "agent_version": "1.0.0",
                           "system_info": {"cpus": 8}})


def test_register_creates_target_status_and_group(live_server: ServerProcess) -> None:
    create_group(live_server, "ml", priority=3, poll_interval_seconds=20)
    reply = _register(live_server, live_server.bootstrap_token("--group", "ml"), "gpu-01")
    assert reply.status == 201, reply.body
    assert set(reply.json) == {"target_id", "agent_token", "poll_interval_seconds",
                               "heartbeat_interval_seconds"}
    assert reply.json["poll_interval_seconds"] == 20
    assert reply.json["heartbeat_interval_seconds"] == 30
    assert reply.json["agent_token"].startswith("aami_agt_")
    with direct_db(live_server.database_url):
        target = Target.get(Target.hostname == "gpu-01")
        assert target.id == reply.json["target_id"]
        assert TargetGroup.select().where(TargetGroup.target == target.id).count() == 1
        status = AgentStatus.get(AgentStatus.target == target.id)
        assert status.agent_version == "1.0.0" and status.system_info == {"cpus": 8}
    ok = agent(live_server, "POST", "/heartbeat", reply.json["agent_token"], json_body=HEARTBEAT)
    assert ok.status == 200

    missing = http("POST", live_server.url + "/api/v1/agent/register",
                   token=live_server.bootstrap_token(), json_body={"agent_version": "1"})
    assert missing.status == 400 and missing.json["details"]["field"] == "body.hostname"
    bad_host = _register(live_server, live_server.bootstrap_token(), "-bad host")
    assert bad_host.status == 400 and bad_host.json["details"]["field"] == "body.hostname"


def test_bootstrap_token_limits(live_server: ServerProcess) -> None:
    once = live_server.bootstrap_token("--max-uses", "1")
    assert _register(live_server, once, "a-1").status == 201
    used = _register(live_server, once, "a-2")
    assert used.status == 401 and used.json["code"] == "INVALID_TOKEN"

    expiring = live_server.bootstrap_token("--expires", "1s")
    time.sleep(1.2)
    expired = _register(live_server, expiring, "a-3")
    assert expired.status == 401 and expired.json["code"] == "INVALID_TOKEN"

    nothing = _register(live_server, None, "a-4")
    assert nothing.status == 401
    forged = _register(live_server, "aami_bst_forged", "a-5")
    assert forged.status == 401 and forged.json["code"] == "INVALID_TOKEN"
    admin = _register(live_server, live_server.token("admin"), "a-6")
    assert admin.status == 403


def test_a_revoked_bootstrap_token_is_refused_although_the_server_cached_it(
        live_server: ServerProcess) -> None:
    # The server caches resolved bootstrap tokens; counting the use re-checks them.
    token = live_server.bootstrap_token("--max-uses", "10")
    assert _register(live_server, token, "early-1").status == 201
    admin = live_server.token("admin")
    listed = http("GET", live_server.url + "/api/v1/bootstrap-tokens", token=admin)
    revoked = http("POST", live_server.url
                   + f"/api/v1/bootstrap-tokens/{listed.json['data'][0]['id']}/revoke",
                   token=admin)
    assert revoked.status == 200, revoked.body
    for hostname in ("late-1", "late-2"):  # refused from the cache, then after forgetting
        late = _register(live_server, token, hostname)
        assert late.status == 401 and late.json["code"] == "INVALID_TOKEN"
    with direct_db(live_server.database_url):
        assert [t.hostname for t in Target.select()] == ["early-1"]
        assert BootstrapToken.get().uses == 1


def test_concurrent_registrations_cannot_exceed_max_uses(live_server: ServerProcess) -> None:
    token = live_server.bootstrap_token("--max-uses", "5")
    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(lambda i: _register(live_server, token, f"race-{i:02d}"),
                                range(12)))
    statuses = sorted(r.status for r in replies)
    assert statuses.count(201) == 5, statuses
    assert set(statuses) == {201, 401}
    with direct_db(live_server.database_url):
        assert BootstrapToken.get().uses == 5
        assert Target.select().count() == 5


def test_one_new_hostname_registered_at_once_by_several_agents(
        live_server: ServerProcess) -> None:
    token = live_server.bootstrap_token("--max-uses", "10")
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: _register(live_server, token, "twin"), range(6)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.body for r in replies]
    assert all(r.json["details"]["field"] == "hostname" for r in replies if r.status == 409)
    with direct_db(live_server.database_url):
        assert BootstrapToken.get().uses == 1  # the refused ones gave their use back
        assert Target.select().count() == 1


def test_rebind_needs_allow_rebind(live_server: ServerProcess) -> None:
    target_id, old_token = register(live_server, "reimaged")
    conflict = _register(live_server, live_server.bootstrap_token(), "reimaged")
    assert conflict.status == 409 and conflict.json["code"] == "CONFLICT"
    assert conflict.json["details"]["target_id"] == target_id
    # The failed attempt did not consume the bootstrap token's use.
    with direct_db(live_server.database_url):
        assert [t.uses for t in BootstrapToken.select().order_by(BootstrapToken.id)][-1] == 0

    rebind = _register(live_server, live_server.bootstrap_token("--allow-rebind"), "reimaged")
    assert rebind.status == 201 and rebind.json["target_id"] == target_id
    new_token = rebind.json["agent_token"]
    assert agent(live_server, "POST", "/heartbeat", new_token, json_body=HEARTBEAT).status == 200
    # The old token is revoked at once in this process (and within 5 s in others).
    gone = agent(live_server, "POST", "/heartbeat", old_token, json_body=HEARTBEAT)
    assert gone.status == 401 and gone.json["code"] == "INVALID_TOKEN"
    # The audit log tells a re-bind from a first registration.
    entries = live_server.api("GET", "/api/v1/audit?object_type=target").json["data"]
    assert [e["action"] for e in reversed(entries)] == ["agent.register", "agent.rebind"]
    assert entries[0]["summary"]["replaced_agent_tokens"] == 1
    assert entries[0]["object_id"] == str(target_id)


def test_rotate_token(live_server: ServerProcess) -> None:
    _, token = register(live_server, "rotor")
    assert agent(live_server, "GET", "/config", token).status == 200  # now cached
    rotated = agent(live_server, "POST", "/rotate-token", token)
    assert rotated.status == 200, rotated.body
    new = rotated.json["agent_token"]
    assert new != token and new.startswith("aami_agt_")
    assert agent(live_server, "GET", "/config", token).status == 401
    assert agent(live_server, "GET", "/config", new).json["hostname"] == "rotor"
    assert agent(live_server, "POST", "/rotate-token", token).status == 401


def test_a_target_created_in_advance_is_claimed_only_with_allow_rebind(
    live_server: ServerProcess,
) -> None:
    s = live_server
    created = s.api("POST", "/api/v1/targets", json_body={"hostname": "gpu-precreated"})
    assert created.status == 201
    body = {"hostname": "gpu-precreated", "agent_version": "1", "system_info": {}}
    plain = s.bootstrap_token("--max-uses", "5")
    refused = http("POST", s.url + "/api/v1/agent/register", token=plain, json_body=body)
    assert refused.status == 409 and "created in advance" in refused.json["error"]
    rebind = s.bootstrap_token("--allow-rebind")
    claimed = http("POST", s.url + "/api/v1/agent/register", token=rebind, json_body=body)
    assert claimed.status == 201, claimed.body
    assert claimed.json["target_id"] == created.json["id"]
    # The refused attempt gave its use back.
    uses = {t["prefix"]: t["uses"] for t in s.api("GET", "/api/v1/bootstrap-tokens").json["data"]}
    assert 0 in uses.values()


def test_a_token_scoped_to_a_hostname_registers_that_node_only(
    live_server: ServerProcess,
) -> None:
    """The other way to claim a target made in advance: a token for that node alone,
    which cannot enrol a stranger nor take over a node that already has an agent."""
    s = live_server
    created = s.api("POST", "/api/v1/targets", json_body={"hostname": "gpu-reserved"})
    assert created.status == 201
    # From the API, as the web UI and `aami bootstrap-token create --hostname` send it.
    made = s.api("POST", "/api/v1/bootstrap-tokens",
                 json_body={"max_uses": 2, "hostname": "gpu-reserved"})
    assert made.status == 201 and made.json["hostname"] == "gpu-reserved", made.body
    scoped = made.json["token"]

    stranger = _register(s, scoped, "gpu-stranger")
    assert stranger.status == 403 and stranger.json["code"] == "HOSTNAME_NOT_ALLOWED"
    assert stranger.json["details"]["field"] == "hostname"
    assert "gpu-reserved" in stranger.json["error"]
    claimed = _register(s, scoped, "gpu-reserved")
    assert claimed.status == 201, claimed.body
    assert claimed.json["target_id"] == created.json["id"]
    # Scoped is not rebind: the node now has an agent, and a second use cannot replace it.
    again = _register(s, scoped, "gpu-reserved")
    assert again.status == 409 and again.json["code"] == "CONFLICT"
    rows = {t["prefix"]: t for t in s.api("GET", "/api/v1/bootstrap-tokens").json["data"]}
    assert rows[made.json["prefix"]]["uses"] == 1  # the refusals gave their uses back
    # Each refusal is one WARNING in the server's log: hostname, address, token prefix.
    wait_until(lambda: s.log().count("registration refused:") >= 2, 10, "the log lines")
    assert re.search(r"WARNING .* registration refused: hostname gpu-stranger from "
                     r"127\.0\.0\.1 with bootstrap token aami_bst_\S{4}\*\*\*: this "
                     r"bootstrap token is for hostname 'gpu-reserved'", s.log()), s.log()
    assert scoped not in s.log()
    with direct_db(s.database_url):
        assert not Target.select().where(Target.hostname == "gpu-stranger").exists()

    # The server's own CLI makes the same token, and refuses what is not a hostname.
    from_cli = s.bootstrap_token("--hostname", "gpu-cli")
    assert _register(s, from_cli, "gpu-other").status == 403
    assert _register(s, from_cli, "gpu-cli").status == 201
    bad = run_cli("aami-server", "bootstrap-token", "create", "--database", s.database_url,
                  "--hostname", "not a host", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "aami-server: error: --hostname: 'not a host' is not a hostname "
        "(letters, digits, '.' and '-')")
    bad_api = s.api("POST", "/api/v1/bootstrap-tokens", json_body={"hostname": "-x y"})
    assert bad_api.status == 400 and bad_api.json["details"]["field"] == "body.hostname"
