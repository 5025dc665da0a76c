"""Helpers for rollout tests: a fleet of agents simulated over the real Agent API
(register, poll assignments, report executions), each reporting success or failure
for the version it was given."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.harness import ServerProcess, wait_until
from tests.server.test_agent_fixtures import agent, now_iso, register

SCRIPT = "gpu-check"


@dataclass
class SimAgent:
    server: ServerProcess
    hostname: str
    target_id: int
    token: str
    # (monotonic time, version) of every poll
    versions: list[tuple[float, str | None]] = field(default_factory=list)

    def poll(self) -> str | None:
        """The version of SCRIPT this agent is assigned now (None: no assignment)."""
        reply = agent(self.server, "GET", "/assignments", self.token)
        assert reply.status == 200, reply.body
        found = [a for a in reply.json["assignments"] if a["script"]["name"] == SCRIPT]
        version = found[0]["script"]["version"] if found else None
        self.versions.append((time.monotonic(), version))
        return version

    def flips_back(self, new: str, grace: float) -> list[float]:
        """Polls that answered another version more than `grace` seconds after this
        agent first got `new` (server processes learn of a change within ~1 s)."""
        first = next((t for t, v in self.versions if v == new), None)
        if first is None:
            return []
        return [t - first for t, v in self.versions if t - first > grace and v != new]

    def report(self, policy_id: int, version: str, success: bool) -> None:
        started = now_iso()
        run = {"id": str(uuid.uuid4()), "policy_id": policy_id, "script_name": SCRIPT,
               "script_version": version, "script_hash": "0" * 64, "started_at": started,
               "finished_at": started, "duration_ms": 5, "exit_code": 0 if success else 1,
               "success": success, "stdout": "", "stderr": "" if success else "boom",
               "error_message": None}
        reply = agent(self.server, "POST", "/executions", self.token,
                      json_body={"executions": [run]})
        assert reply.status == 200 and reply.json["accepted"] == 1, reply.body


def fleet(server: ServerProcess, count: int, prefix: str = "node") -> list[SimAgent]:
    boot = server.bootstrap_token("--max-uses", str(count))
    return [SimAgent(server, f"{prefix}-{i:03d}", *register(server, f"{prefix}-{i:03d}", boot))
            for i in range(count)]


def create_rollout_policy(server: ServerProcess, rollout: dict[str, Any],
                          name: str = "gpu") -> int:
    reply = server.api("POST", "/api/v1/policies", role="operator", json_body={
        "name": name, "script": SCRIPT, "version": "latest", "scope": "global",
        "schedule": {"mode": "interval", "interval": "60s"}, "rollout": rollout})
    assert reply.status == 201, reply.body
    assert reply.json["rollout"]["steps"] == rollout["steps"]
    return int(reply.json["id"])


def rollouts(server: ServerProcess, policy_id: int) -> list[dict[str, Any]]:
    reply = server.api("GET", f"/api/v1/rollouts?policy_id={policy_id}", role="viewer")
    assert reply.status == 200, reply.body
    return list(reply.json["data"])


def current(server: ServerProcess, policy_id: int) -> dict[str, Any]:
    return rollouts(server, policy_id)[0]


def wait_rollout(server: ServerProcess, policy_id: int,
                 predicate: Callable[[dict[str, Any]], bool], timeout: float = 20,
                 what: str = "rollout state") -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        listed = rollouts(server, policy_id)
        if listed:
            found.update(listed[0])
        return bool(listed) and predicate(found)

    wait_until(check, timeout=timeout, what=what)
    return dict(found)


def settle(agents: list[SimAgent], version: str, expected: int,
           timeout: float = 30) -> set[str]:
    """Poll (without running) until three rounds in a row give `expected` agents
    `version`: with several server processes, each learns of a decision on its own
    (within about a second, more on a loaded machine). The agents on `version`."""
    streak, on_version = 0, set()

    def agreed() -> bool:
        nonlocal streak, on_version
        on_version = {sim.hostname for sim in agents if sim.poll() == version}
        streak = streak + 1 if len(on_version) == expected else 0
        return streak >= 3

    wait_until(agreed, timeout=timeout,
               what=f"{expected} agents on {version} in every server process")
    return on_version


def run_round(agents: list[SimAgent], policy_id: int,
              succeed: Callable[[str], bool]) -> dict[str, str | None]:
    """Every agent polls, then runs what it got once: {hostname: version}."""
    seen = {}
    for sim in agents:
        version = sim.poll()
        seen[sim.hostname] = version
        if version is not None:
            sim.report(policy_id, version, succeed(version))
    return seen
