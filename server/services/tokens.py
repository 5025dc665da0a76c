"""Admin API tokens and bootstrap tokens: creation, listing, revocation.

The secret is returned once, at creation; only its hash is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aami.server.db import write_transaction
from aami.server.errors import NotFound, Unprocessable
from aami.server.models import ApiToken, BootstrapToken, Group
from aami.server.services import groups, revision
from aami.server.timefmt import iso
from aami.server.tokens import Role, TokenKind, new_token


def api_token_to_wire(row: ApiToken) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "role": row.role, "prefix": row.prefix,
            "revoked": row.revoked, "created_at": iso(row.created_at),
            "last_used_at": iso(row.last_used_at)}


def create_api_token(name: str, role: Role) -> tuple[str, dict[str, Any]]:
    token = new_token(TokenKind.ADMIN)
    row = ApiToken.create(name=name, role=role.value, token_hash=token.token_hash,
                          prefix=token.prefix)
    return token.secret, api_token_to_wire(row)


def list_api_tokens(*, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    query = ApiToken.select().order_by(ApiToken.id)
    return [api_token_to_wire(r) for r in query.limit(limit).offset(offset)], query.count()


def revoke_api_token(token_id: int) -> dict[str, Any]:
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        raise NotFound(f"token {token_id} does not exist", details={"id": token_id})
    with write_transaction():
        row.revoked = True
        row.save()
        revision.bump_credentials()
    return api_token_to_wire(row)


def api_token_hash(token_id: int) -> str | None:
    """The stored hash of a token (to drop it from this process's auth cache)."""
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    return row.token_hash if row else None


def bootstrap_to_wire(row: BootstrapToken) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "max_uses": row.max_uses,
            "uses": row.uses, "expires_at": iso(row.expires_at),
            "group": row.group.name if row.group is not None else None,
            "allow_rebind": row.allow_rebind, "hostname": row.hostname,
            "revoked": row.revoked,
            "created_at": iso(row.created_at)}


def create_bootstrap_token(*, name: str = "", max_uses: int = 1,
                           expires_at: datetime | None = None, group: str | None = None,
                           allow_rebind: bool = False, hostname: str | None = None,
                           ) -> tuple[str, dict[str, Any]]:
    token = new_token(TokenKind.BOOTSTRAP)
    with write_transaction():
        group_row: Group | None = None
        if group:
            try:
                group_row = groups.by_name(group)
            except NotFound:
                # A missing object named in a body is 422 everywhere (docs/api.md).
                raise Unprocessable(f"group {group!r} does not exist",
                                    code="UNKNOWN_GROUP",
                                    details={"field": "body.group", "name": group}) from None
        row = BootstrapToken.create(
            name=name, token_hash=token.token_hash, prefix=token.prefix, max_uses=max_uses,
            expires_at=expires_at, group=group_row, allow_rebind=allow_rebind,
            hostname=hostname,
        )
    return token.secret, bootstrap_to_wire(row)


def list_bootstrap_tokens(*, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    query = BootstrapToken.select().order_by(BootstrapToken.id)
    return [bootstrap_to_wire(r) for r in query.limit(limit).offset(offset)], query.count()


def revoke_bootstrap_token(token_id: int) -> dict[str, Any]:
    row = BootstrapToken.get_or_none(BootstrapToken.id == token_id)
    if row is None:
        raise NotFound(f"bootstrap token {token_id} does not exist", details={"id": token_id})
    row.revoked = True
    row.save()
    return bootstrap_to_wire(row)
