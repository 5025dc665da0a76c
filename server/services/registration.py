"""Agent registration (bootstrap token -> agent token) and agent token rotation.

Rules, each with the attack or accident it stops:

* The bootstrap token's use is counted by one conditional UPDATE (`uses < max_uses`,
  not revoked, not expired): two concurrent registrations cannot both take the last
  use (token replay). A registration that fails afterwards (409) gives it back.
* A hostname that already has a live agent token is not taken over unless the
  bootstrap token says `allow_rebind` (a leaked bootstrap token must not let an
  attacker impersonate an existing node); with it, the old agent tokens are revoked
  (a re-imaged node replaces its former self).
* A target an admin created in advance (no agent has ever held a token for it) is
  claimed only with `allow_rebind`, or with a token scoped to that hostname:
  whoever holds an ordinary bootstrap token must not pick up the target-scoped
  policies and parameters waiting for that node.
* A token scoped to a hostname registers that hostname and no other (403): handed
  to one node's installer, it cannot enrol a stranger, nor claim other nodes.
* The new token is returned once; only its hash is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peewee import IntegrityError

from aami.server.db import is_postgres, write_transaction
from aami.server.errors import Conflict, Forbidden, InvalidToken
from aami.server.models import (
    AgentStatus,
    AgentToken,
    BootstrapToken,
    Target,
    TargetGroup,
    database_proxy,
)
from aami.server.services import revision
from aami.server.timefmt import utcnow
from aami.server.tokens import TokenKind, new_token


@dataclass(frozen=True)
class Registration:
    target_id: int
    hostname: str
    agent_token: str
    revoked_hashes: tuple[str, ...]  # old agent tokens to drop from auth caches
    # For a target created just now: its groups (so its view needs no query).
    new_target_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Grant:
    """One counted use of a bootstrap token, and what the token says about the target."""

    group_id: int | None
    allow_rebind: bool
    hostname: str | None = None  # the one hostname this token may register


def take_use(token_id: int) -> Grant:
    """Count one use, atomically, in a transaction of its own.

    A whole fleet may register with one bootstrap token: its row is the hottest lock
    in the system, so it is held only for this one UPDATE. On PostgreSQL the commit
    does not wait for the disk: the registration transaction that follows commits
    synchronously, and WAL is flushed in order, so by the time the agent holds its
    token the use is durable too (and a crash before that loses both together).
    The UPDATE returns what the token says about the target: no second read.
    """
    now = utcnow()
    with write_transaction():
        if is_postgres(database_proxy.obj):
            database_proxy.execute_sql("SET LOCAL synchronous_commit TO OFF")
        taken = list(BootstrapToken.update(uses=BootstrapToken.uses + 1)
                     .where(BootstrapToken.id == token_id,
                            BootstrapToken.uses < BootstrapToken.max_uses,
                            BootstrapToken.revoked == False,  # noqa: E712
                            BootstrapToken.expires_at.is_null()
                            | (BootstrapToken.expires_at > now))
                     .returning(BootstrapToken.group, BootstrapToken.allow_rebind,
                                BootstrapToken.hostname)
                     .tuples().execute())
    if len(taken) != 1:
        raise InvalidToken("the bootstrap token is used up, revoked or expired")
    group_id, allow_rebind, hostname = taken[0]
    return Grant(group_id, bool(allow_rebind), hostname)


def give_back_use(token_id: int) -> None:
    """Undo `take_use` for a registration that failed (e.g. 409)."""
    BootstrapToken.update(uses=BootstrapToken.uses - 1).where(
        BootstrapToken.id == token_id, BootstrapToken.uses > 0).execute()


def _bind_existing(target: Target, grant: Grant) -> tuple[str, ...]:
    allow_rebind = grant.allow_rebind
    tokens = list(AgentToken.select().where(AgentToken.target == target.id))
    if not tokens and not allow_rebind and grant.hostname != target.hostname:
        raise Conflict(
            f"hostname {target.hostname!r} was created in advance and has no agent yet; "
            "claim it with a bootstrap token created for it (--hostname) or with "
            "--allow-rebind",
            details={"field": "hostname", "target_id": target.id})
    live = [t for t in tokens if t.revoked_at is None]
    if live and not allow_rebind:
        raise Conflict(
            f"hostname {target.hostname!r} is already registered to an agent; use a "
            "bootstrap token created with --allow-rebind to replace it",
            details={"field": "hostname", "target_id": target.id})
    if live:
        AgentToken.update(revoked_at=utcnow()).where(
            AgentToken.id.in_([t.id for t in live])).execute()
        revision.bump_credentials()
    return tuple(t.token_hash for t in live)


def register(bootstrap_token_id: int, body: dict[str, Any], *,
             default_heartbeat: int) -> Registration:
    """Bind an agent token to the target of `body["hostname"]` (created if new).

    The agent's intervals are not computed here: the caller reads them from the
    assignment cache, which the agent's first poll needs anyway.
    """
    grant = take_use(bootstrap_token_id)
    if grant.hostname is not None and grant.hostname != body["hostname"]:
        give_back_use(bootstrap_token_id)
        raise Forbidden(
            f"this bootstrap token is for hostname {grant.hostname!r}, "
            f"not {body['hostname']!r}",
            code="HOSTNAME_NOT_ALLOWED", details={"field": "hostname"})
    try:
        return _register(grant, body, default_heartbeat=default_heartbeat)
    except BaseException:
        give_back_use(bootstrap_token_id)
        raise


def _register(grant: Grant, body: dict[str, Any], *, default_heartbeat: int) -> Registration:
    # A new hostname, the common case of a fleet rollout, costs four INSERTs and a
    # commit: every extra round trip is time a registration holds a database thread.
    hostname = body["hostname"]
    token = new_token(TokenKind.AGENT)
    try:
        with write_transaction():
            created = list(Target.insert(hostname=hostname).on_conflict_ignore()
                           .returning(Target.id).tuples().execute())
            revoked: tuple[str, ...] = ()
            if created:
                target_id, existed = created[0][0], False
            else:
                target = Target.get(Target.hostname == hostname)
                target_id, existed = target.id, True
                revoked = _bind_existing(target, grant)
            joined = grant.group_id is not None and (not existed or not TargetGroup.select().where(
                TargetGroup.target == target_id, TargetGroup.group == grant.group_id).exists())
            if joined:
                TargetGroup.insert(target=target_id, group=grant.group_id).execute()
            if existed and joined:
                # Membership of a known target changed: caches elsewhere may hold it.
                revision.bump()
            _upsert_status(target_id, body, default_heartbeat, existed=existed)
            AgentToken.insert(target=target_id, token_hash=token.token_hash,
                              prefix=token.prefix).execute()
    except IntegrityError:
        # Two agents re-binding one hostname at the same moment: one wins.
        raise Conflict(f"hostname {hostname!r} was registered concurrently; retry",
                       details={"field": "hostname"}) from None
    groups = None if existed else ((grant.group_id,) if grant.group_id is not None else ())
    return Registration(target_id, hostname, token.secret, revoked, groups)


def _upsert_status(target_id: int, body: dict[str, Any], heartbeat_interval: int, *,
                   existed: bool) -> None:
    # The interval is refreshed by the agent's first heartbeat (the effective one).
    values = {"agent_version": str(body.get("agent_version", ""))[:64],
              "system_info": body.get("system_info") or {},
              "heartbeat_interval_seconds": heartbeat_interval}
    updated = existed and AgentStatus.update(**values).where(
        AgentStatus.target == target_id).execute()
    if not updated:
        AgentStatus.insert(target=target_id, **values).execute()


def rotate(token_id: int, target_id: int) -> str:
    """Revoke the caller's token and issue a new one, atomically."""
    with write_transaction():
        revoked = (AgentToken.update(revoked_at=utcnow())
                   .where(AgentToken.id == token_id, AgentToken.target == target_id,
                          AgentToken.revoked_at.is_null())
                   .execute())
        if revoked != 1:
            raise InvalidToken("the agent token is no longer valid")
        revision.bump_credentials()
        token = new_token(TokenKind.AGENT)
        AgentToken.create(target=target_id, token_hash=token.token_hash, prefix=token.prefix)
    return token.secret
