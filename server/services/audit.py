"""The audit log: every state-changing action, once, in a hash chain.

Each entry holds the hash of the entry before it (`prev_hash`) and its own `hash`,
the SHA-256 of `prev_hash` and its canonical fields. So:

* editing an entry (who, what, when, the summary) breaks its own hash;
* deleting or reordering entries breaks the next entry's `prev_hash`;
* dropping old entries is allowed only through `prune`, which appends a checkpoint
  entry (chained like any other) naming the first entry kept and the hash it must
  point at; dropping the head of the log by hand is therefore detected as well.

What the chain cannot show on its own: someone with write access to the database
who rewrites the whole chain from some entry on, or removes the newest entries.
So the head is recorded outside the database: the server logs it when it changes
(api/audit.py; the journal, shipped off the host), `verify` prints it, and
`verify(pinned=...)` checks that a recorded head is still in the chain, which pins
every entry up to it (docs/security.md, "Audit log").

Appends take one lock, so two server processes never chain to the same entry:
PostgreSQL's transaction-scoped advisory lock, SQLite's write lock (`BEGIN
IMMEDIATE` in `write_transaction`).
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aami.server.db import is_postgres, write_transaction
from aami.server.errors import ValidationFailed
from aami.server.models import AuditEntry, database_proxy
from aami.server.timefmt import iso, parse_iso, utcnow

GENESIS = "0" * 64
CHECKPOINT = "audit.checkpoint"
_LOCK_KEY = 0x4A4D_4932  # "the AAMI audit chain lock" among advisory locks
SUMMARY_MAX_CHARS = 2000
VERIFY_BATCH = 2000


@dataclass(frozen=True)
class Actor:
    kind: str  # token | session | cli | agent | bootstrap | server
    name: str
    role: str | None = None


SERVER = Actor("server", "aami-server")


def cli_actor() -> Actor:
    """The local user running `aami-server` (the database is theirs to write)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor("cli", user[:128], None)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(fields)).hexdigest()


def _fields(row: AuditEntry) -> dict[str, Any]:
    """What the hash covers: every column but the id and the hashes themselves."""
    return {"at": row.at.isoformat(), "actor_kind": row.actor_kind,
            "actor_name": row.actor_name, "actor_role": row.actor_role,
            "action": row.action, "object_type": row.object_type,
            "object_id": row.object_id, "summary": row.summary,
            "request_id": row.request_id, "source": row.source}


def _short(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A summary small enough to keep forever; long values are cut, not dropped."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        text = json.dumps(value, default=str)
        out[key] = value if len(text) <= 500 else text[:500] + "…"
    if len(canonical(out)) > SUMMARY_MAX_CHARS:
        out = {"truncated": canonical(out).decode()[:SUMMARY_MAX_CHARS]}
    return out


def _lock() -> None:
    database = database_proxy.obj
    if is_postgres(database):
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def _head() -> str:
    row = AuditEntry.select(AuditEntry.hash).order_by(AuditEntry.id.desc()).first()
    return row.hash if row is not None else GENESIS


def head() -> tuple[int, str] | None:
    """The newest entry's id and hash (None while the log is empty)."""
    row = (AuditEntry.select(AuditEntry.id, AuditEntry.hash)
           .order_by(AuditEntry.id.desc()).first())
    return (row.id, row.hash) if row is not None else None


def append(actor: Actor, action: str, object_type: str, object_id: str | None,
           summary: Mapping[str, Any], request_id: str | None = None,
           source: str | None = None) -> AuditEntry:
    """Inside the caller's write transaction: chain one entry to the current head
    (so the entry commits, or not, with the change it records)."""
    _lock()
    row = AuditEntry(at=utcnow(), actor_kind=actor.kind, actor_name=actor.name[:128],
                     actor_role=actor.role, action=action[:64], object_type=object_type[:32],
                     object_id=None if object_id is None else str(object_id)[:128],
                     summary=_short(summary), request_id=request_id,
                     source=None if source is None else source[:128])
    row.prev_hash = _head()
    row.hash = entry_hash(row.prev_hash, _fields(row))
    row.save(force_insert=True)
    return row


def record(actor: Actor, action: str, object_type: str, object_id: Any = None,
           summary: Mapping[str, Any] | None = None, *, request_id: str | None = None,
           source: str | None = None) -> dict[str, Any]:
    """Append one entry in its own transaction; returns it as the API shows it."""
    with write_transaction():
        row = append(actor, action, object_type,
                      None if object_id is None else str(object_id), summary or {},
                      request_id, source)
    return to_wire(row)


def to_wire(row: AuditEntry) -> dict[str, Any]:
    return {"id": row.id, "at": iso(row.at),
            "actor": {"kind": row.actor_kind, "name": row.actor_name, "role": row.actor_role},
            "action": row.action, "object_type": row.object_type, "object_id": row.object_id,
            "summary": row.summary, "request_id": row.request_id, "source": row.source,
            "prev_hash": row.prev_hash, "hash": row.hash}


def list_entries(*, actor: str | None = None, action: str | None = None,
                 object_type: str | None = None, since: str | None = None,
                 until: str | None = None, cursor: str | None = None, limit: int = 50
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; `cursor` is the id of the last entry of the previous page."""
    query = AuditEntry.select().order_by(AuditEntry.id.desc())
    if actor:
        query = query.where(AuditEntry.actor_name == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if since:
        query = query.where(AuditEntry.at >= _time(since, "query.since"))
    if until:
        query = query.where(AuditEntry.at < _time(until, "query.until"))
    if cursor:
        if not cursor.isdigit():
            raise ValidationFailed("query.cursor: not a cursor from this listing",
                                   details={"field": "query.cursor"})
        query = query.where(AuditEntry.id < int(cursor))
    rows = list(query.limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return [to_wire(r) for r in rows], (str(rows[-1].id) if more and rows else None)


def _time(value: str, field: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise ValidationFailed(f"{field}: not an RFC 3339 timestamp: {value!r}",
                               details={"field": field}) from None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head: str
    broken_id: int | None = None
    reason: str = ""


def _walk() -> Iterator[AuditEntry]:
    after = 0
    while True:
        batch = list(AuditEntry.select().where(AuditEntry.id > after)
                     .order_by(AuditEntry.id).limit(VERIFY_BATCH))
        yield from batch
        if len(batch) < VERIFY_BATCH:
            return
        after = batch[-1].id


def _anchors() -> dict[int, str]:
    """first kept id -> the hash it must chain to, from every checkpoint entry."""
    found: dict[int, str] = {}
    for row in AuditEntry.select().where(AuditEntry.action == CHECKPOINT):
        summary = row.summary if isinstance(row.summary, dict) else {}
        kept, head = summary.get("first_kept_id"), summary.get("dropped_head_hash")
        if isinstance(kept, int) and isinstance(head, str):
            found[kept] = head
    return found


def verify(pinned: str | None = None) -> Verdict:
    """Walk the chain from the oldest entry; stop at the first that does not hold.

    `pinned`: a head recorded earlier outside the database; the chain must still
    hold an entry of that hash (else entries up to it were rewritten or removed)."""
    anchors = _anchors()
    expected: str | None = None
    checked = 0
    pinned_seen = pinned is None
    for row in _walk():
        if expected is None:  # the oldest kept entry: genesis, or a checkpoint's anchor
            if row.prev_hash != GENESIS and anchors.get(row.id) != row.prev_hash:
                return Verdict(False, checked, "", row.id, "the oldest entry follows entries "
                               "that were removed without a checkpoint")
        elif row.prev_hash != expected:
            return Verdict(False, checked, "", row.id,
                           "prev_hash does not match the entry before it "
                           "(an entry was removed or reordered)")
        if entry_hash(row.prev_hash, _fields(row)) != row.hash:
            return Verdict(False, checked, "", row.id, "its hash does not match its content "
                           "(the entry was edited)")
        expected = row.hash
        checked += 1
        pinned_seen = pinned_seen or row.hash == pinned
    if not pinned_seen:
        return Verdict(False, checked, expected or GENESIS, None,
                       f"no entry has the pinned hash {pinned}: entries up to it were "
                       "rewritten or removed (or pruned since it was recorded)")
    return Verdict(True, checked, expected or GENESIS)


def prune(before: datetime, actor: Actor) -> dict[str, Any]:
    """Drop entries older than `before` (never the newest) and chain a checkpoint that
    names the first entry kept and the hash it points at."""
    with write_transaction():
        _lock()
        newest = AuditEntry.select(AuditEntry.id).order_by(AuditEntry.id.desc()).first()
        if newest is None:
            return {"dropped": 0}
        doomed = (AuditEntry.select(AuditEntry.id)
                  .where(AuditEntry.at < before, AuditEntry.id < newest.id))
        last = doomed.order_by(AuditEntry.id.desc()).first()
        if last is None:
            return {"dropped": 0}
        kept = (AuditEntry.select().where(AuditEntry.id > last.id)
                .order_by(AuditEntry.id).first())
        assert kept is not None  # the newest entry is never dropped
        dropped = AuditEntry.delete().where(AuditEntry.id <= last.id).execute()
        entry = append(actor, CHECKPOINT, "audit", None,
                        {"dropped": int(dropped), "before": iso(before),
                         "first_kept_id": kept.id, "dropped_head_hash": kept.prev_hash},
                        None, None)
    return {"dropped": int(dropped), "first_kept_id": kept.id, "checkpoint_id": entry.id}
