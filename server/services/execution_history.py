"""Execution history and security events: filtered listings with keyset paging.

History grows by millions of rows, so pages are found by position, not by count:
each page ends with a cursor holding the (started_at, id) of its last row, and the
next page asks for rows strictly "before" it in the order (started_at DESC, id DESC).
That is one index range scan per page (indexes `(started_at, id)` and
`(target, started_at, id)` on script_executions), so page 10,000 costs what page 1
costs; OFFSET would read and discard every earlier row. No total is counted for the
same reason.

The cursor is opaque to clients: urlsafe base64 of `[iso-time, id]`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import peewee

from aami.server.errors import NotFound, ValidationFailed
from aami.server.models import ScriptExecution, SecurityEvent, Target
from aami.server.timefmt import iso


def encode_cursor(when: datetime, row_id: str) -> str:
    raw = json.dumps([when.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(time, id) from a cursor; ValidationFailed naming `query.cursor` if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, row_id = json.loads(raw)
        if not isinstance(row_id, str) or not isinstance(when, str):
            raise ValueError
        return datetime.fromisoformat(when).replace(tzinfo=None), row_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("query.cursor: not a cursor this server issued",
                               details={"field": "query.cursor"}) from None


def _before(time_field: peewee.Field, id_field: peewee.Field, cursor: str) -> peewee.Expression:
    when, row_id = decode_cursor(cursor)
    # "(time, id) < (when, row_id)". The leading `time <= when` is implied by the rest
    # but is what lets SQLite and PostgreSQL start a range scan of the (time, id)
    # index at the cursor instead of filtering the index from its newest end.
    return (time_field <= when) & ((time_field < when) | (id_field < row_id))


def execution_to_wire(row: ScriptExecution) -> dict[str, Any]:
    """`row` joined to its Target (id and hostname selected)."""
    return {
        "id": row.id,
        "target_id": row.target.id,
        "hostname": row.target.hostname,
        "policy_id": row.script_policy_id,
        "script_name": row.script_name,
        "script_version": row.script_version,
        "script_hash": row.script_hash,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "duration_ms": row.duration_ms,
        "exit_code": row.exit_code,
        "success": row.success,
        "stdout": row.stdout,
        "stderr": row.stderr,
        "error_message": row.error_message,
        "trigger": row.trigger,
        "force_token": row.force_token,
    }


def _page(query: Any, limit: int, cursor_of: Callable[[Any], str],
          to_wire: Callable[[Any], dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    rows = list(query.limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursor_of(rows[-1]) if more and rows else None
    return [to_wire(r) for r in rows], next_cursor


def list_executions(*, target_id: int | None = None, policy_id: int | None = None,
                    script: str | None = None, success: bool | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    cursor: str | None = None, limit: int = 50
                    ) -> tuple[list[dict[str, Any]], str | None]:
    ex = ScriptExecution
    query = (ex.select(ex, Target.id, Target.hostname).join(Target)
             .order_by(ex.started_at.desc(), ex.id.desc()))
    if target_id is not None:
        query = query.where(ex.target == target_id)
    if policy_id is not None:
        query = query.where(ex.script_policy == policy_id)
    if script:
        query = query.where(ex.script_name == script)
    if success is not None:
        query = query.where(ex.success == success)
    if since is not None:
        query = query.where(ex.started_at >= since)
    if until is not None:
        query = query.where(ex.started_at < until)
    if cursor:
        query = query.where(_before(ex.started_at, ex.id, cursor))
    return _page(query, limit, lambda r: encode_cursor(r.started_at, r.id),
                 execution_to_wire)


def read_execution(execution_id: str) -> dict[str, Any]:
    row = (ScriptExecution.select(ScriptExecution, Target.id, Target.hostname).join(Target)
           .where(ScriptExecution.id == execution_id).first())
    if row is None:
        raise NotFound(f"execution {execution_id} does not exist", details={"id": execution_id})
    return execution_to_wire(row)


def event_to_wire(row: SecurityEvent) -> dict[str, Any]:
    """`row` joined to its Target (id and hostname selected)."""
    return {
        "id": row.id,
        "target_id": row.target.id,
        "hostname": row.target.hostname,
        "policy_id": row.policy_id,
        "script_name": row.script_name,
        "script_version": row.script_version,
        "script_hash": row.script_hash,
        "reason": row.reason,
        "message": row.message,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
    }


def list_security_events(*, target_id: int | None = None, reason: str | None = None,
                         since: datetime | None = None, until: datetime | None = None,
                         cursor: str | None = None, limit: int = 50
                         ) -> tuple[list[dict[str, Any]], str | None]:
    ev = SecurityEvent
    query = (ev.select(ev, Target.id, Target.hostname).join(Target)
             .order_by(ev.occurred_at.desc(), ev.id.desc()))
    if target_id is not None:
        query = query.where(ev.target == target_id)
    if reason:
        query = query.where(ev.reason == reason)
    if since is not None:
        query = query.where(ev.occurred_at >= since)
    if until is not None:
        query = query.where(ev.occurred_at < until)
    if cursor:
        query = query.where(_before(ev.occurred_at, ev.id, cursor))
    return _page(query, limit, lambda r: encode_cursor(r.occurred_at, r.id),
                 event_to_wire)
