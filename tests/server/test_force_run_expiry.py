"""Force-runs expire and can be cancelled: a real server, agents over the Agent API.

States per target: pending (not served yet), delivered (served on an assignment),
done/failed (its execution arrived), expired (its expiry passed first), cancelled.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tests.harness import ServerProcess, wait_until
from tests.server.test_agent_fixtures import (
    agent,
    create_policy,
    execution,
    publish_script,
    register,
)
from tests.web.helpers import UiClient


def _tokens(server: ServerProcess, agent_token: str) -> list[str | None]:
    items = agent(server, "GET", "/assignments", agent_token).json["assignments"]
    return [a["force_token"] for a in items]


def _status(server: ServerProcess, force_id: int) -> dict[str, Any]:
    return server.api("GET", f"/api/v1/force-runs/{force_id}", role="viewer").json


def test_expiry_and_delivered_state(live_server: ServerProcess) -> None:
    url = live_server.database_url
    publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho hi\n")
    policy = create_policy(url, "disk", "disk-usage")
    target_id, token = register(live_server, "expiry-1")

    default = live_server.api("POST", f"/api/v1/targets/{target_id}/force-run",
                              role="operator", json_body={"policy_id": policy}).json
    status = _status(live_server, default["id"])
    created = time.time()
    assert status["expires_at"] == default["expires_at"] and status["results"][0][
        "status"] == "pending"
    # Default expiry: one hour after the request (give or take the test's own latency).
    expires = datetime.fromisoformat(status["expires_at"].replace("Z", "+00:00")).timestamp()
    assert 3590 < expires - created < 3610

    short = live_server.api("POST", f"/api/v1/targets/{target_id}/force-run",
                            role="operator", json_body={"policy_id": policy,
                                                        "expires_in": "8s"})
    assert short.status == 202, short.body
    wait_until(lambda: _tokens(live_server, token) == [short.json["token"]], timeout=6,
               what="the newer force token on the assignment")
    assert _status(live_server, short.json["id"])["results"][0]["status"] == "delivered"
    # After expiry the agent no longer receives it (the older, hour-long one is back).
    wait_until(lambda: _tokens(live_server, token) == [default["token"]], timeout=30,
               what="the expired token leaving the assignment")
    expired = _status(live_server, short.json["id"])
    assert expired["status"] == "expired" and expired["counts"]["expired"] == 1
    assert expired["results"][0]["status"] == "expired"
    # Cancelling an expired request is a conflict; a bad expiry names the field.
    assert live_server.api("POST", f"/api/v1/force-runs/{short.json['id']}/cancel",
                           role="operator").status == 409
    bad = live_server.api("POST", f"/api/v1/targets/{target_id}/force-run",
                          role="operator", json_body={"policy_id": policy,
                                                      "expires_in": "soon"})
    assert bad.status == 400 and bad.json["details"]["field"] == "body.expires_in"


def test_cancel_pending_and_delivered(live_server: ServerProcess) -> None:
    url = live_server.database_url
    sha = publish_script(url, "disk-usage", "1.0.0", b"#!/bin/sh\necho hi\n")
    policy = create_policy(url, "disk", "disk-usage")
    first_id, first = register(live_server, "cancel-1")
    done_id, done = register(live_server, "cancel-2")
    boot = live_server.bootstrap_token()
    assert boot

    reply = live_server.api("POST", f"/api/v1/targets/{first_id}/force-run",
                            role="operator", json_body={"policy_id": policy}).json
    wait_until(lambda: _tokens(live_server, first) == [reply["token"]], timeout=5,
               what="force token delivered")
    finished = live_server.api("POST", f"/api/v1/targets/{done_id}/force-run",
                               role="operator", json_body={"policy_id": policy}).json
    wait_until(lambda: _tokens(live_server, done) == [finished["token"]], timeout=5,
               what="second force token delivered")
    agent(live_server, "POST", "/executions", done, json_body={"executions": [
        execution(policy, sha, force_token=finished["token"], trigger="force")]})

    assert live_server.api("POST", f"/api/v1/force-runs/{reply['id']}/cancel",
                           role="viewer").status == 403
    cancelled = live_server.api("POST", f"/api/v1/force-runs/{reply['id']}/cancel",
                                role="operator")
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json["status"] == "cancelled"
    assert cancelled.json["cancelled_targets"] == 1 and cancelled.json["cancelled_at"]
    assert _tokens(live_server, first) == [None]  # at once, through this process
    assert _status(live_server, reply["id"])["results"][0]["status"] == "cancelled"
    # A request already done keeps its outcome: nothing left to cancel.
    again = live_server.api("POST", f"/api/v1/force-runs/{finished['id']}/cancel",
                            role="operator").json
    assert again["cancelled_targets"] == 0 and again["counts"]["done"] == 1
    assert live_server.api("POST", "/api/v1/force-runs/99999/cancel",
                           role="operator").status == 404

    # The web UI's cancel button does the same.
    third = live_server.api("POST", f"/api/v1/targets/{first_id}/force-run",
                            role="operator", json_body={"policy_id": policy}).json
    ui = UiClient(live_server.url)
    ui.login(live_server.token("operator"))
    page = ui.get(f"/ui/force-runs/{third['id']}")
    assert 'id="force-run-cancel"' in page.text
    done_page = ui.post(f"/ui/force-runs/{third['id']}/cancel", {"csrf_token": page.csrf()})
    assert done_page.status == 303, done_page.text[:300]
    assert _status(live_server, third["id"])["status"] == "cancelled"
    assert "cancelled" in ui.get(f"/ui/force-runs/{third['id']}").text
