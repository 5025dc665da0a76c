"""NUL characters: PostgreSQL text cannot hold them. An operator's input with one is
refused with the documented error naming the field; what an agent reports is kept
with the NUL replaced, so one odd byte in a script's output never blocks a node."""

from __future__ import annotations

import uuid

from tests.harness import ServerProcess


def test_operator_input_with_nul_is_refused(live_server: ServerProcess) -> None:
    query = live_server.api("GET", "/api/v1/targets?hostname=a%00b")
    assert query.status == 400
    assert query.json["details"]["field"] == "query.hostname"
    body = live_server.api("POST", "/api/v1/groups",
                           json_body={"name": "ok", "description": "x\u0000y"})
    assert body.status == 400 and body.json["details"]["field"] == "body.description"
    path = live_server.api("GET", "/api/v1/executions/ab%00cd")
    assert path.status in (400, 404) and path.json["code"] in ("VALIDATION_ERROR", "NOT_FOUND")


def test_agent_output_with_nul_is_stored_replaced(live_server: ServerProcess) -> None:
    bootstrap = live_server.bootstrap_token()
    registered = live_server.api(
        "POST", "/api/v1/agent/register", token=bootstrap,
        json_body={"hostname": "node-nul", "agent_version": "t",
                   "system_info": {"gpu": "odd\u0000name"}})
    assert registered.status == 201, registered.body
    agent_token = registered.json["agent_token"]
    execution_id = str(uuid.uuid4())
    reported = live_server.api("POST", "/api/v1/agent/executions", token=agent_token, json_body={
        "executions": [{
            "id": execution_id, "policy_id": None, "script_name": "s", "script_version": "1.0.0",
            "script_hash": "0" * 64, "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:01Z", "duration_ms": 1000, "exit_code": 0,
            "success": True, "stdout": "before\u0000after", "stderr": "", "error_message": None,
        }]})
    assert reported.status == 200, reported.body
    stored = live_server.api("GET", f"/api/v1/executions/{execution_id}")
    assert stored.status == 200 and stored.json["stdout"] == "before\ufffdafter"
