"""Signed scripts: upload (verified with the trust package), versions, listing.

The server is not trusted to create code (docs/architecture.md section 2); it verifies uploads
only to give the publisher an early, friendly refusal. An upload is stored when:
the document parses, a registered and unrevoked publisher key signed it, the content
hash matches, the statement has not expired, and its version is higher than every
stored version of that name. Re-sending the very same statement and content is a
harmless no-op (200), so publishing is idempotent. Refusals keep the trust package's
reason code: the API code comes from `trust.errors.API_CODES`, the status from
server/http_errors.py.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import peewee

from aami.server.db import write_transaction
from aami.server.errors import Conflict, NotFound, TrustRefused
from aami.server.models import PublisherKey, Script
from aami.server.services import publisher_keys, revision
from aami.server.timefmt import iso
from aami.trust.errors import API_CODES, TrustError
from aami.trust.signed_script import SignedScript
from aami.trust.statement import ScriptStatement, parse_version
from aami.trust.verify import verify_script

# Every column but the content, for listings (content can be up to 1 MiB per row).
_SUMMARY_FIELDS = [f for f in Script._meta.sorted_fields if f.name != "content"]
_NEWEST_FIRST = (Script.version_major.desc(), Script.version_minor.desc(),
                 Script.version_patch.desc())


def refusal_error(exc: TrustError) -> TrustRefused:
    """The API error for a trust refusal, with the stable code of its reason."""
    return TrustRefused(str(exc), reason=exc.reason,
                        code=API_CODES.get(exc.reason, exc.reason.upper()))


def to_wire(row: Script, key: PublisherKey | None = None) -> dict[str, Any]:
    key = key or row.key
    return {
        "name": row.name,
        "version": row.version,
        "sha256": row.sha256,
        "interpreter": row.interpreter,
        "timeout_seconds": row.timeout_seconds,
        "params_schema": row.params_schema,
        "expires_at": iso(row.expires_at),
        "run_as": row.run_as,
        "key_id": key.key_id,
        "key_name": key.name,
        "created_at": iso(row.created_at),
    }


def detail_to_wire(row: Script, *, include_content: bool) -> dict[str, Any]:
    data = to_wire(row)
    envelope = row.envelope
    data["envelope"] = envelope
    data["statement"] = ScriptStatement.from_payload(
        base64.b64decode(envelope["payload"])).to_json()
    data["size_bytes"] = len(bytes(row.content))
    if include_content:
        data["content"] = base64.b64encode(bytes(row.content)).decode("ascii")
    return data


def _summary_query() -> Any:  # peewee's generic ModelSelect types are too narrow
    return Script.select(*_SUMMARY_FIELDS, PublisherKey).join(PublisherKey)


def upload(document: dict[str, Any], now: datetime) -> tuple[dict[str, Any], bool]:
    """Verify and store a signed script; (wire form, True if newly stored)."""
    try:
        signed = SignedScript.from_json(document)
        verified = verify_script(signed.envelope, signed.content,
                                 publisher_keys.trusted_keys(), now=now.replace(tzinfo=UTC))
    except TrustError as exc:
        raise refusal_error(exc) from None
    statement = verified.statement
    envelope = signed.envelope.to_json()
    with write_transaction():
        same = Script.get_or_none(Script.name == statement.name,
                                  Script.version == statement.version)
        if same is not None:
            if same.sha256 == statement.sha256 and same.envelope["payload"] == envelope["payload"]:
                return to_wire(same), False
            raise _not_higher(statement, same.version)
        highest = Script.select(Script.version).where(Script.name == statement.name) \
            .order_by(*_NEWEST_FIRST).first()
        if highest and parse_version(highest.version) >= parse_version(statement.version):
            raise _not_higher(statement, highest.version)
        major, minor, patch = parse_version(statement.version)
        expires = statement.expires_at
        try:
            row = Script.create(
                name=statement.name, version=statement.version, version_major=major,
                version_minor=minor, version_patch=patch, sha256=statement.sha256,
                content=signed.content, envelope=envelope,
                key=PublisherKey.get(PublisherKey.key_id == verified.key_id),
                interpreter=statement.interpreter, timeout_seconds=statement.timeout_seconds,
                params_schema=statement.params_schema,
                expires_at=expires.astimezone(UTC).replace(tzinfo=None) if expires else None,
                run_as=list(statement.run_as) if statement.run_as is not None else None,
            )
        except peewee.IntegrityError:
            raise _not_higher(statement, statement.version) from None
        revision.bump()
    return to_wire(row), True


def _not_higher(statement: ScriptStatement, stored: str) -> Conflict:
    return Conflict(
        f"{statement.name} {statement.version} is not higher than the stored {stored}",
        code="VERSION_NOT_HIGHER",
        details={"reason": "rollback", "name": statement.name, "version": statement.version,
                 "highest_version": stored},
    )


def list_latest(*, name: str | None, limit: int, offset: int
                ) -> tuple[list[dict[str, Any]], int]:
    """The newest version of each script name; with `name`, every version of it."""
    if name:
        return list_versions(name, limit=limit, offset=offset, must_exist=False)
    names_query = Script.select(Script.name).distinct().order_by(Script.name)
    total = names_query.count()
    names = [r.name for r in names_query.limit(limit).offset(offset)]
    newest: dict[str, dict[str, Any]] = {}
    rows = _summary_query().where(Script.name.in_(names)).order_by(Script.name, *_NEWEST_FIRST)
    for row in rows:
        newest.setdefault(row.name, to_wire(row, row.key))
    return [newest[n] for n in names if n in newest], total


def list_versions(name: str, *, limit: int, offset: int, must_exist: bool = True
                  ) -> tuple[list[dict[str, Any]], int]:
    query = _summary_query().where(Script.name == name).order_by(*_NEWEST_FIRST)
    total = query.count()
    if must_exist and total == 0:
        raise NotFound(f"script {name!r} does not exist", details={"name": name})
    return [to_wire(r, r.key) for r in query.limit(limit).offset(offset)], total


def get_version(name: str, version: str) -> Script:
    row = Script.get_or_none(Script.name == name, Script.version == version)
    if row is None:
        raise NotFound(f"script {name!r} has no version {version}",
                       details={"name": name, "version": version})
    return row


def read_version(name: str, version: str, *, include_content: bool) -> dict[str, Any]:
    return detail_to_wire(get_version(name, version), include_content=include_content)


def resolve(name: str, version: str) -> Script | None:
    """The stored script a policy's (script, version) points at: a pinned version or
    the highest one for "latest"; None when there is none. Content is not loaded."""
    query = Script.select(*_SUMMARY_FIELDS).where(Script.name == name)
    if version != "latest":
        query = query.where(Script.version == version)
    return query.order_by(*_NEWEST_FIRST).first()
