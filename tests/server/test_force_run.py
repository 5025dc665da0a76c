"""Force-run on a target and on a group, read back through the operations API."""

from __future__ import annotations

import time

from tests.harness import ServerProcess
from tests.server.test_agent_fixtures import (
    agent,
    create_group,
    create_policy,
    execution,
    publish_script,
    register,
)


def _force_token(server: ServerProcess, token: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        items = agent(server, "GET", "/assignments", token).json["assignments"]
        forced = [a["force_token"] for a in items if a["force_token"]]
        if forced:
            return forced[0]
        assert time.monotonic() < deadline, f"no force token within {timeout}s: {items}"
        time.sleep(0.1)


def _wait_job(server: ServerProcess, job_id: int) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 10
    while True:
        job = server.api("GET", f"/api/v1/jobs/{job_id}", role="viewer").json
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_force_run_on_a_target(live_server: ServerProcess) -> None:
    url = live_server.database_url
    sha = publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho hi\n")
    policy = create_policy(url, "disk", "disk-usage")
    target_id, token = register(live_server, "force-1")
    other_id, other_token = register(live_server, "force-2")
    before = agent(live_server, "GET", "/assignments", token)
    assert [a["force_token"] for a in before.json["assignments"]] == [None]

    reply = live_server.api("POST", f"/api/v1/targets/{target_id}/force-run", role="operator",
                            json_body={"policy_id": policy})
    assert reply.status == 202, reply.body
    assert reply.json["status"] == "pending" and reply.json["targets"] == 1
    force_id, force_token = reply.json["id"], reply.json["token"]
    # The agent's cached ETag no longer matches: the new token shows up on the next poll.
    changed = agent(live_server, "GET", "/assignments", token,
                    headers={"If-None-Match": before.headers["ETag"]})
    assert changed.status == 200
    assert _force_token(live_server, token) == force_token
    assert agent(live_server, "GET", "/assignments", other_token).json[
        "assignments"][0]["force_token"] is None

    # Another agent reporting the token completes nothing of this request.
    agent(live_server, "POST", "/executions", other_token, json_body={
        "executions": [execution(policy, sha, force_token=force_token)]})
    status = live_server.api("GET", f"/api/v1/force-runs/{force_id}", role="viewer").json
    assert status["status"] == "pending" and status["counts"]["delivered"] == 1

    run = execution(policy, sha, force_token=force_token, trigger="force")
    assert agent(live_server, "POST", "/executions", token,
                 json_body={"executions": [run]}).json["accepted"] == 1
    status = live_server.api("GET", f"/api/v1/force-runs/{force_id}", role="viewer").json
    assert status["status"] == "done" and status["counts"] == {
        "pending": 0, "delivered": 0, "done": 1, "failed": 0, "expired": 0, "cancelled": 0}
    assert status["results"] == [{"target_id": target_id, "hostname": "force-1",
                                  "status": "done", "execution_id": run["id"],
                                  "updated_at": status["results"][0]["updated_at"]}]
    assert status["policy_id"] == policy and status["target_id"] == target_id
    # Spent: the token leaves the assignments.
    assert agent(live_server, "GET", "/assignments", token).json[
        "assignments"][0]["force_token"] is None

    assert live_server.api("POST", f"/api/v1/targets/{target_id}/force-run", role="viewer",
                           json_body={"policy_id": policy}).status == 403
    assert live_server.api("POST", "/api/v1/targets/99999/force-run",
                           json_body={"policy_id": policy}).status == 404
    unknown = live_server.api("POST", f"/api/v1/targets/{target_id}/force-run",
                              json_body={"policy_id": 99999})
    assert unknown.status == 422 and unknown.json["code"] == "UNKNOWN_POLICY"
    create_group(live_server, "elsewhere")
    narrow = create_policy(url, "narrow", "disk-usage", scope="group", group="elsewhere")
    refused = live_server.api("POST", f"/api/v1/targets/{target_id}/force-run",
                              json_body={"policy_id": narrow})
    assert refused.status == 422 and refused.json["details"]["field"] == "body.policy_id"
    assert live_server.api("GET", "/api/v1/force-runs/99999", role="viewer").status == 404
    assert other_id != target_id


def test_force_run_on_a_group_runs_as_a_job(live_server: ServerProcess) -> None:
    url = live_server.database_url
    sha = publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho hi\n")
    group_id = create_group(live_server, "rack-7")
    create_group(live_server, "rack-8")
    policy = create_policy(url, "disk-rack", "disk-usage", scope="group", group="rack-7")
    boot = live_server.bootstrap_token("--max-uses", "10", "--group", "rack-7")
    agents = [register(live_server, f"rack7-{i}", boot) for i in range(3)]
    outsider = register(live_server, "rack8-0",
                        live_server.bootstrap_token("--group", "rack-8"))

    reply = live_server.api("POST", f"/api/v1/groups/{group_id}/force-run", role="operator",
                            json_body={"policy_id": policy})
    assert reply.status == 202, reply.body
    assert reply.json["targets"] == 3 and reply.json["status"] == "pending"
    job = _wait_job(live_server, reply.json["job_id"])
    assert job["kind"] == "force_run" and job["status"] == "done", job
    assert job["progress_done"] == 3 and job["progress_total"] == 3
    assert job["detail"]["targets"] == 3 and job["started_at"] and job["finished_at"]
    listed = live_server.api("GET", "/api/v1/jobs?kind=force_run", role="viewer").json
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    assert listed["pagination"]["total"] == 1

    token = reply.json["token"]
    for i, (_, agent_token) in enumerate(agents):
        assert _force_token(live_server, agent_token) == token
        if i < 2:  # two of three report; one of them failed
            agent(live_server, "POST", "/executions", agent_token, json_body={"executions": [
                execution(policy, sha, force_token=token, success=i == 0)]})
    assert agent(live_server, "GET", "/assignments", outsider[1]).json["assignments"] == []
    status = live_server.api("GET", f"/api/v1/force-runs/{reply.json['id']}",
                             role="viewer").json
    assert status["counts"] == {"pending": 0, "delivered": 1, "done": 1, "failed": 1,
                                "expired": 0, "cancelled": 0}
    assert status["status"] == "pending" and status["targets"] == 3
    assert status["group_id"] == group_id and status["job"]["id"] == job["id"]
    assert live_server.api("GET", "/api/v1/jobs/99999", role="viewer").status == 404
    assert live_server.api("GET", "/api/v1/jobs?status=bogus", role="viewer").status == 400
