"""Helpers for the Agent API tests (no tests here): seed signed scripts and policies
straight into a server's database, and act as an agent over real HTTP.

Scripts are signed with `trust` exactly as the operator's CLI would; rows go in
through the models, and every assignment-changing write bumps the configuration
revision in the same transaction, as the admin API does.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aami.server.db import open_database
from aami.server.models import (
    Group,
    Policy,
    PublisherKey,
    Script,
    Target,
    TargetGroup,
    database_proxy,
)
from aami.server.services import revision
from aami.trust import generate_private_key_pem, key_id, parse_version, public_key_pem, sign_script
from tests.harness import Reply, ServerProcess, http

KEY_PEM = generate_private_key_pem()


@contextmanager
def direct_db(database_url: str) -> Iterator[None]:
    """The server's database, opened in the test process (for seeding and checks)."""
    db = open_database(database_url, max_connections=2)
    database_proxy.initialize(db)
    db.connect(reuse_if_open=True)
    try:
        yield
    finally:
        if hasattr(db, "close_all"):
            db.close_all()
        else:
            db.close()


def publish_script(database_url: str, name: str, version: str, content: bytes, *,
                   params_schema: dict[str, Any] | None = None,
                   timeout_seconds: int = 30) -> str:
    """Sign and store a script version; returns its SHA-256."""
    signed = sign_script(content, KEY_PEM, name=name, version=version,
                         timeout_seconds=timeout_seconds, params_schema=params_schema or {})
    public = public_key_pem(KEY_PEM)
    kid = key_id(public)
    major, minor, patch = parse_version(version)
    with direct_db(database_url), database_proxy.atomic():
        key = PublisherKey.get_or_none(PublisherKey.key_id == kid) or PublisherKey.create(
            name=f"test-{kid[:8]}", key_id=kid, public_key=public.decode())
        Script.create(name=name, version=version, version_major=major, version_minor=minor,
                      version_patch=patch, sha256=hashlib.sha256(content).hexdigest(),
                      content=content, envelope=signed.envelope.to_json(), key=key.id,
                      interpreter="bash", timeout_seconds=timeout_seconds,
                      params_schema=params_schema or {})
        revision.bump()
    return hashlib.sha256(content).hexdigest()


def create_policy(database_url: str, name: str, script: str, **fields: Any) -> int:
    fields.setdefault("scope", "global")
    fields.setdefault("interval_seconds", 60)
    with direct_db(database_url), database_proxy.atomic():
        if "group" in fields and isinstance(fields["group"], str):
            fields["group"] = Group.get(Group.name == fields["group"]).id
        if "target" in fields and isinstance(fields["target"], str):
            fields["target"] = Target.get(Target.hostname == fields["target"]).id
        policy = Policy.create(name=name, script_name=script, **fields)
        revision.bump()
    return int(policy.id)


def update_policy(database_url: str, policy_id: int, **fields: Any) -> None:
    with direct_db(database_url), database_proxy.atomic():
        Policy.update(**fields).where(Policy.id == policy_id).execute()
        revision.bump()


def join_group(database_url: str, target_id: int, group_name: str) -> None:
    with direct_db(database_url), database_proxy.atomic():
        TargetGroup.create(target=target_id, group=Group.get(Group.name == group_name).id)
        revision.bump()


def create_group(server: ServerProcess, name: str, **fields: Any) -> int:
    reply = server.api("POST", "/api/v1/groups", json_body={"name": name, **fields})
    assert reply.status == 201, reply.body
    return int(reply.json["id"])


def register(server: ServerProcess, hostname: str, bootstrap: str | None = None
             ) -> tuple[int, str]:
    """A new agent: (target id, agent token)."""
    reply = http("POST", server.url + "/api/v1/agent/register",
                 token=bootstrap or server.bootstrap_token(),
                 json_body={"hostname": hostname, "agent_version": "1.0.0",
                            "system_info": {"os": "linux"}})
    assert reply.status == 201, reply.body
    return int(reply.json["target_id"]), str(reply.json["agent_token"])


def agent(server: ServerProcess, method: str, path: str, token: str | None,
          **kwargs: Any) -> Reply:
    return http(method, server.url + "/api/v1/agent" + path, token=token, **kwargs)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def execution(policy_id: int | None, sha256: str, *, success: bool = True,
              started_at: str | None = None, **extra: Any) -> dict[str, Any]:
    started = started_at or now_iso()
    return {"id": str(uuid.uuid4()), "policy_id": policy_id, "script_name": "disk-usage",
            "script_version": "1.0.0", "script_hash": sha256, "started_at": started,
            "finished_at": started, "duration_ms": 12, "exit_code": 0 if success else 1,
            "success": success, "stdout": "ok\n", "stderr": "", "error_message": None,
            **extra}
