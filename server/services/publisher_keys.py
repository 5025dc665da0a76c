"""Publisher keys: the Ed25519 public keys whose signatures the server accepts on upload.

The key id is always computed from the key material (`trust.keys.key_id`), never
taken from the client, so a key cannot be registered under another key's id.
Revoking keeps the row: scripts signed by the key stay listed, uploads signed by it
are refused as `REVOKED_KEY`, and the agents' own trusted-key directories remain
the check that counts (docs/architecture.md section 2).
"""

from __future__ import annotations

from typing import Any

import peewee

from aami.server.db import write_transaction
from aami.server.errors import Conflict, NotFound, Unprocessable
from aami.server.models import PublisherKey
from aami.server.services import revision
from aami.server.timefmt import iso, utcnow
from aami.trust.errors import MalformedKey
from aami.trust.keys import TrustedKey, load_trusted_key


def to_wire(row: PublisherKey) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "key_id": row.key_id,
            "public_key": row.public_key, "revoked": row.revoked,
            "revoked_at": iso(row.revoked_at), "created_at": iso(row.created_at)}


def get(key_pk: int) -> PublisherKey:
    row = PublisherKey.get_or_none(PublisherKey.id == key_pk)
    if row is None:
        raise NotFound(f"publisher key {key_pk} does not exist", details={"id": key_pk})
    return row


def parse_public_key(pem: str) -> TrustedKey:
    """The trusted key for `pem`, or 422 MALFORMED_KEY naming the field."""
    try:
        return load_trusted_key(pem.encode("utf-8"))
    except MalformedKey as exc:
        raise Unprocessable(f"body.public_key: {exc}", code="MALFORMED_KEY",
                            details={"field": "body.public_key", "reason": exc.reason}) from None


def create(name: str, public_key: str) -> dict[str, Any]:
    key = parse_public_key(public_key)
    pem = key.public_pem.decode("utf-8").strip() + "\n"
    with write_transaction():
        if PublisherKey.select().where(PublisherKey.name == name).exists():
            raise Conflict(f"publisher key {name!r} already exists", details={"field": "body.name"})
        clash = PublisherKey.get_or_none(PublisherKey.key_id == key.key_id)
        if clash is not None:
            raise Conflict(f"this key is already registered as {clash.name!r}",
                           details={"field": "body.public_key", "key_id": key.key_id})
        try:
            row = PublisherKey.create(name=name, key_id=key.key_id, public_key=pem)
        except peewee.IntegrityError:
            raise Conflict("publisher key already exists (concurrent registration)",
                           details={"field": "body.name"}) from None
        revision.bump()
    return to_wire(row)


def list_keys(*, revoked: bool | None, limit: int, offset: int
              ) -> tuple[list[dict[str, Any]], int]:
    query = PublisherKey.select().order_by(PublisherKey.name)
    if revoked is not None:
        query = query.where(PublisherKey.revoked == revoked)
    return [to_wire(r) for r in query.limit(limit).offset(offset)], query.count()


def revoke(key_pk: int) -> dict[str, Any]:
    with write_transaction():
        row = get(key_pk)
        if not row.revoked:
            row.revoked, row.revoked_at = True, utcnow()
            row.save()
            revision.bump()
    return to_wire(row)


def trusted_keys() -> dict[str, TrustedKey]:
    """Every registered key (revoked ones flagged), keyed by key id, for verify_script."""
    return {
        row.key_id: TrustedKey(key_id=row.key_id, public_pem=row.public_key.encode("utf-8"),
                               name=row.name, revoked=row.revoked)
        for row in PublisherKey.select()
    }
