"""Resolved tokens are cached for minutes, yet a revocation made through one server
process takes effect on another within about a second (credentials revision)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import fresh_database
from tests.harness import ServerProcess, wait_until


def test_revocations_reach_the_other_process(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as url, \
            ServerProcess.start(url, tmp_path) as a, ServerProcess.start(url, tmp_path) as b:
        admin = a.token("admin")
        victim = a.api("POST", "/api/v1/tokens",
                       json_body={"name": "victim", "role": "viewer"}).json
        assert b.api("GET", "/api/v1/groups", token=victim["token"]).status == 200  # cached
        registered = b.api("POST", "/api/v1/agent/register", token=b.bootstrap_token(),
                           json_body={"hostname": "n1", "agent_version": "t",
                                      "system_info": {}}).json
        agent = registered["agent_token"]
        assert b.api("GET", "/api/v1/agent/config", token=agent).status == 200  # cached

        assert a.api("POST", f"/api/v1/tokens/{victim['id']}/revoke", token=admin).status == 200
        wait_until(lambda: b.api("GET", "/api/v1/groups", token=victim["token"]).status == 401,
                   30, "the admin token refused by the other process")

        assert a.api("DELETE", f"/api/v1/targets/{registered['target_id']}",
                     token=admin).status == 204
        wait_until(lambda: b.api("GET", "/api/v1/agent/config", token=agent).status == 401,
                   30, "the agent token refused by the other process")
