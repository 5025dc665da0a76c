"""Security events from agents: every refusal to run a script, stored exactly once.

Same rules as executions (`server.services.execution_ingest`): idempotent by the
id the agent made, always stored under the caller's target, and the policy link
kept only for a policy in the caller's current assignments.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from aami.server.db import write_transaction
from aami.server.models import Policy, SecurityEvent
from aami.server.services.execution_ingest import IngestResult, parse_time, truncate_tail
from aami.server.timefmt import utcnow

MAX_MESSAGE_BYTES = 4096


def to_row(target_id: int, item: dict[str, Any], index: int,
           allowed_policies: Collection[int]) -> dict[str, Any]:
    policy_id = item.get("policy_id")
    return {
        "id": item["id"].lower(),
        "target": target_id,
        "policy": policy_id if policy_id in allowed_policies else None,
        "script_name": item.get("script_name") or "",
        "script_version": item.get("script_version") or "",
        "script_hash": item.get("script_hash") or "",
        "reason": item["reason"],
        "message": truncate_tail(item.get("message") or "", MAX_MESSAGE_BYTES),
        "occurred_at": parse_time(item["occurred_at"], f"body.events[{index}].occurred_at"),
        "received_at": utcnow(),
    }


def ingest(target_id: int, items: Sequence[dict[str, Any]],
           allowed_policies: Collection[int]) -> IngestResult:
    rows = [to_row(target_id, item, i, allowed_policies) for i, item in enumerate(items)]
    unique = list({row["id"]: row for row in rows}.values())
    with write_transaction():
        wanted = sorted({r["policy"] for r in unique if r["policy"]})
        live = ({p.id for p in Policy.select(Policy.id).where(Policy.id.in_(wanted))}
                if wanted else set())
        for row in unique:
            if row["policy"] not in live:
                row["policy"] = None
        inserted: list[str] = []
        if unique:
            cursor = (SecurityEvent.insert_many(unique).on_conflict_ignore()
                      .returning(SecurityEvent.id).execute())
            inserted = [r[0] if isinstance(r, tuple) else r.id for r in cursor]
    return IngestResult(len(inserted), len(items) - len(inserted), tuple(sorted(inserted)))
