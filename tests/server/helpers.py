"""Helpers for admin API tests: signed scripts, and rows written straight into the
server's database (agent tokens, agent status, executions) for parts of the product
whose own APIs are tested elsewhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from aami.server.db import open_database
from aami.server.models import AgentStatus, AgentToken, Target, database_proxy
from aami.server.tokens import TokenKind, new_token
from aami.trust import generate_private_key_pem, public_key_pem, sign_script
from tests.harness import ServerProcess


@contextmanager
def direct_db(url: str) -> Iterator[peewee.Database]:
    """The server's database, opened in the test process (SQLite WAL lets both write)."""
    db = open_database(url, max_connections=2)
    database_proxy.initialize(db)
    db.connect(reuse_if_open=True)
    try:
        yield db
    finally:
        if isinstance(db, PooledPostgresqlDatabase):
            db.close_all()
        else:
            db.close()


class Publisher:
    """A publisher key pair, registered on a server on demand."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"pub-{uuid.uuid4().hex[:8]}"
        self.private_pem = generate_private_key_pem()
        self.public_pem = public_key_pem(self.private_pem).decode()

    def register(self, server: ServerProcess) -> dict[str, Any]:
        reply = server.api("POST", "/api/v1/publisher-keys",
                           json_body={"name": self.name, "public_key": self.public_pem})
        assert reply.status == 201, reply.body
        return reply.json

    def sign(self, name: str, version: str, content: bytes = b"#!/bin/sh\necho ok\n",
             **kwargs: Any) -> dict[str, Any]:
        return sign_script(content, self.private_pem, name=name, version=version,
                           **kwargs).to_json()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_agent_token(url: str, hostname: str) -> str:
    """An agent token for `hostname` (its target created if needed), as registration
    would make it: only the hash is stored."""
    token = new_token(TokenKind.AGENT)
    with direct_db(url):
        target, _ = Target.get_or_create(hostname=hostname)
        AgentToken.create(target=target, token_hash=token.token_hash, prefix=token.prefix)
    return token.secret


def set_heartbeat(url: str, target_id: int, when: datetime | None, interval: int = 30) -> None:
    with direct_db(url):
        AgentStatus.delete().where(AgentStatus.target == target_id).execute()
        AgentStatus.create(target=target_id, last_heartbeat=when, agent_version="1.0.0",
                           heartbeat_interval_seconds=interval)


def seed_executions(count: int, target_ids: list[int], *, start: datetime,
                    policy_id: int | None = None, batch: int = 5000) -> list[str]:
    """Insert `count` executions (one a second from `start`, targets round-robin, every
    third one failed) through the models' database; returns their ids in insert order."""
    from aami.server.models import ScriptExecution

    ids: list[str] = []
    rows = []
    for n in range(count):
        row_id = str(uuid.UUID(int=n + 1))
        ids.append(row_id)
        rows.append({
            "id": row_id, "target": target_ids[n % len(target_ids)],
            "script_policy": policy_id, "script_name": "disk" if n % 2 else "mem",
            "script_version": "1.0.0", "script_hash": "ab" * 32,
            "started_at": start + timedelta(seconds=n // 2), "success": n % 3 != 0,
            "exit_code": 0 if n % 3 else 1, "duration_ms": 10, "stdout": "ok",
        })
        if len(rows) >= batch:
            ScriptExecution.insert_many(rows).execute()
            rows = []
    if rows:
        ScriptExecution.insert_many(rows).execute()
    return ids
