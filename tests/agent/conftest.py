"""Shared pieces for the agent tests.

`InMemoryServer` implements the agent's `AgentClient` Protocol in memory. It is the
sanctioned seam (STYLE.md habit 5): poller, scheduler, spool and reporter are tested
through it, while everything below it (files, subprocesses, sockets, trust
verification with real Ed25519 keys) is real. It de-duplicates executions and events
by id as the Agent API contract requires, so exactly-once can be checked. End-to-end
tests against the real server live in `test_e2e_*.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from aami.agent.client import InvalidToken, NotFound, PayloadTooLarge, ServerUnavailable
from aami.agent.config import AgentConfig, AgentSettings, Limits, MetricsSettings, TrustSettings
from aami.agent.wire import Ack, AssignmentSet, Intervals, Registration, RemoteConfig
from aami.trust.keys import generate_private_key_pem, public_key_pem
from aami.trust.signed_script import SignedScript, sign_script


@dataclass
class Publisher:
    private_pem: bytes
    keys_dir: Path

    def sign(self, content: bytes, *, name: str = "check", version: str = "1.0.0",
             **kw: Any) -> SignedScript:
        return sign_script(content, self.private_pem, name=name, version=version, **kw)


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    private = generate_private_key_pem()
    keys = tmp_path / "trusted-keys"
    keys.mkdir()
    (keys / "ops.pub").write_bytes(public_key_pem(private))
    return Publisher(private, keys)


def assignment(
    signed: SignedScript,
    *,
    policy_id: int = 1,
    params: Mapping[str, Any] | None = None,
    mode: str = "interval",
    interval: int | None = 60,
    timeout: int | None = None,
    run_as: str | None = None,
    force_token: str | None = None,
    name: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """One assignment exactly as the Agent API sends it."""
    import base64
    import json

    statement = json.loads(base64.b64decode(signed.envelope.to_json()["payload"]))
    return {
        "policy_id": policy_id,
        "policy_name": f"policy-{policy_id}",
        "script": {
            "name": name or statement["name"],
            "version": version or statement["version"],
            "sha256": hashlib.sha256(signed.content).hexdigest(),
            "envelope": signed.envelope.to_json(),
        },
        "params": dict(params or {}),
        "schedule": {"mode": mode, "interval_seconds": interval if mode == "interval" else None},
        "timeout_seconds": timeout,
        "run_as": run_as,
        "force_token": force_token,
    }


@dataclass
class InMemoryServer:
    """The Agent API's behaviour, in memory (see the module docstring)."""

    bootstrap_token: str = "bootstrap-secret-123"
    assignments: list[dict[str, Any]] = field(default_factory=list)
    scripts: dict[str, bytes] = field(default_factory=dict)
    etag: str = "e1"
    down: bool = False
    forget_token: bool = False
    max_batch: int = 10_000
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    registrations: int = 0
    token: str | None = None
    issued: list[str] = field(default_factory=list)

    def publish(self, signed: SignedScript, **kw: Any) -> dict[str, Any]:
        self.scripts[hashlib.sha256(signed.content).hexdigest()] = signed.content
        item = assignment(signed, **kw)
        self.assignments.append(item)
        self.etag = f"e{len(self.calls)}-{len(self.assignments)}-{id(item)}"
        return item

    def changed(self) -> None:
        self.etag += "x"

    # -- AgentClient --------------------------------------------------------------------

    def set_token(self, token: str | None) -> None:
        self.token = token

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise ServerUnavailable(f"{call}: connection refused")
        if self.forget_token or self.token not in self.issued:
            raise InvalidToken(401, "INVALID_TOKEN", "unknown token")

    async def register(self, bootstrap_token: str, hostname: str, agent_version: str,
                       system_info: Mapping[str, Any]) -> Registration:
        self.calls.append("register")
        if self.down:
            raise ServerUnavailable("register: connection refused")
        if bootstrap_token != self.bootstrap_token:
            raise InvalidToken(401, "INVALID_TOKEN", "bad bootstrap token")
        self.registrations += 1
        self.forget_token = False
        token = f"agent-token-{self.registrations}-abcdef"
        self.issued = [token]
        return Registration(7, token, 30, 30)

    async def heartbeat(self, body: Mapping[str, Any]) -> Intervals:
        self._check("heartbeat")
        self.heartbeats.append(dict(body))
        return Intervals(30, 30)

    async def get_config(self) -> RemoteConfig:
        self._check("config")
        return RemoteConfig(30, 30, 7, "node", ("gpu", "ml"))

    async def get_assignments(self, etag: str | None) -> AssignmentSet | None:
        self._check("assignments")
        if etag == self.etag:
            return None
        return AssignmentSet.from_json({"etag": self.etag, "assignments": self.assignments})

    async def get_script(self, sha256: str) -> bytes:
        self._check("script")
        if sha256 not in self.scripts:
            raise NotFound(404, "NOT_FOUND", "no such script")
        return self.scripts[sha256]

    def _ack(self, store: dict[str, dict[str, Any]], records: Sequence[Mapping[str, Any]]) -> Ack:
        if len(records) > self.max_batch:
            raise PayloadTooLarge(413, "PAYLOAD_TOO_LARGE", "batch too large")
        accepted = dup = 0
        for record in records:
            if record["id"] in store:
                dup += 1
            else:
                store[record["id"]] = dict(record)
                accepted += 1
        self.duplicates += dup
        return Ack(accepted, dup)

    async def post_executions(self, records: Sequence[Mapping[str, Any]]) -> Ack:
        self._check("executions")
        return self._ack(self.executions, records)

    async def post_security_events(self, events: Sequence[Mapping[str, Any]]) -> Ack:
        self._check("events")
        return self._ack(self.events, events)

    async def rotate_token(self) -> str:
        self._check("rotate")
        self.issued = [f"rotated-{len(self.calls)}-abcdef"]
        return self.issued[0]


@pytest.fixture
def server() -> InMemoryServer:
    return InMemoryServer()


def make_config(tmp_path: Path, keys_dir: Path | None = None, **limits: Any) -> AgentConfig:
    base = AgentConfig()
    return replace(
        base,
        agent=AgentSettings(hostname="node-01", state_dir=str(tmp_path / "state"),
                            bootstrap_token_file=None),
        trust=TrustSettings(keys_dir=str(keys_dir or tmp_path / "trusted-keys")),
        metrics=MetricsSettings(listen=None, textfile_dir=str(tmp_path / "textfile")),
        bootstrap_token="bootstrap-secret-123",
        limits=replace(Limits(), kill_grace=1.0, **limits),
    )
