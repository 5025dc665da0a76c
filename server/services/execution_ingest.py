"""Execution results from agents: validated, truncated, stored exactly once.

* Idempotent by the execution id the agent made before running: rows are inserted
  with `ON CONFLICT DO NOTHING ... RETURNING id`, so a retried (or concurrently
  duplicated) batch stores nothing twice, and only the ids actually inserted move
  the counters in `agent_status` (through the coalesced status writes of
  `server.services.heartbeats`) or complete a force-run.
* An id that already exists, whoever sent it, is a duplicate: an agent can never
  overwrite another target's row by reusing its id.
* The execution is always stored under the caller's target. Its `policy_id` is
  kept only when that policy is among the caller's current assignments (or the
  policy of a force-run addressed to it); otherwise it is stored with no policy, so
  an agent cannot attribute results to a policy that is not its own. Executions
  reported after the policy left the caller's assignments lose the link for the
  same reason (the row, script name and hash still say what ran).
* stdout/stderr/error_message are cut to `max_output_bytes`, keeping the tail (the
  end of a log says why it failed), behind a marker saying how much was cut.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aami.server.db import write_transaction
from aami.server.errors import ValidationFailed
from aami.server.models import Policy, ScriptExecution
from aami.server.services import force_runs, rollout_engine
from aami.server.timefmt import parse_iso, utcnow

TRIGGERS = ("schedule", "once", "force")
MARKER = "[aami-server: {} bytes truncated]\n"
INSERT_CHUNK = 500  # rows per INSERT statement (17 parameters each)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    inserted_ids: tuple[str, ...] = ()
    succeeded: int = 0  # of the inserted ones


def truncate_tail(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes of `text`, keeping the end, with a marker in front."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    cut = len(data) - max(0, limit - len(MARKER.format(len(data))))
    tail = data[cut:].decode("utf-8", errors="ignore")  # drop a split first character
    return MARKER.format(cut) + tail


def parse_time(value: str | None, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise ValidationFailed(f"{where}: not an RFC 3339 timestamp: {value!r}",
                               details={"field": where}) from None


def to_row(target_id: int, item: dict[str, Any], index: int, allowed_policies: Collection[int],
           max_output: int, received_at: datetime) -> dict[str, Any]:
    where = f"body.executions[{index}]"
    policy_id = item.get("policy_id")
    trigger = item.get("trigger") or ("force" if item.get("force_token") else "schedule")
    started = parse_time(item["started_at"], f"{where}.started_at")
    error = item.get("error_message")
    return {
        "id": item["id"].lower(),
        "target": target_id,
        "script_policy": policy_id if policy_id in allowed_policies else None,
        "script_name": item["script_name"],
        "script_version": item["script_version"],
        "script_hash": item["script_hash"],
        "started_at": started,
        "finished_at": parse_time(item.get("finished_at"), f"{where}.finished_at"),
        "duration_ms": item.get("duration_ms"),
        "exit_code": item.get("exit_code"),
        "success": bool(item["success"]),
        "stdout": truncate_tail(item.get("stdout") or "", max_output),
        "stderr": truncate_tail(item.get("stderr") or "", max_output),
        "error_message": truncate_tail(error, max_output) if error is not None else None,
        "trigger": trigger,
        "force_token": item.get("force_token"),
        "received_at": received_at,
    }


def _existing_policies(candidates: set[int]) -> set[int]:
    if not candidates:
        return set()
    return {p.id for p in Policy.select(Policy.id).where(Policy.id.in_(sorted(candidates)))}


@dataclass(frozen=True)
class Batch:
    """One request's executions, already validated and truncated (`prepare`)."""

    target_id: int
    rows: list[dict[str, Any]]
    submitted: int  # items in the request, repeats included


def prepare(target_id: int, items: Sequence[dict[str, Any]], allowed_policies: Collection[int],
            max_output: int) -> Batch:
    """Validate and convert a request; raises ValidationFailed naming the bad field."""
    received = utcnow()
    rows = [to_row(target_id, item, i, allowed_policies, max_output, received)
            for i, item in enumerate(items)]
    return Batch(target_id, rows, len(items))


def store(batches: Sequence[Batch]) -> list[IngestResult]:
    """Store several requests' rows in ONE transaction (a group commit).

    An id appearing twice (within or across requests) is stored once, for the first
    request that carried it; every later appearance counts as a duplicate.
    """
    owner: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, batch in enumerate(batches):
        for row in batch.rows:
            owner.setdefault(row["id"], (index, row))
    unique = [row for _, row in owner.values()]
    with write_transaction():
        # A policy deleted since the caller's view was built: store without the link.
        live = _existing_policies({r["script_policy"] for r in unique if r["script_policy"]})
        for row in unique:
            if row["script_policy"] not in live:
                row["script_policy"] = None
        inserted = set()
        for start in range(0, len(unique), INSERT_CHUNK):
            inserted.update(_insert_new(unique[start:start + INSERT_CHUNK]))
        for row in unique:
            if row["id"] in inserted and row["force_token"]:
                force_runs.mark_done(row["target"], row["force_token"], row["id"],
                                     row["success"])
        # Runs of a rollout's new version by its cohort: counted once, with the rows.
        rollout_engine.count_runs([row for row in unique if row["id"] in inserted])
    results = []
    for index, batch in enumerate(batches):
        mine = [r for r in batch.rows if r["id"] in inserted and owner[r["id"]][0] == index
                and owner[r["id"]][1] is r]
        results.append(IngestResult(len(mine), batch.submitted - len(mine),
                                    tuple(sorted(r["id"] for r in mine)),
                                    sum(1 for r in mine if r["success"])))
    return results


def ingest(target_id: int, items: Sequence[dict[str, Any]], allowed_policies: Collection[int],
           max_output: int) -> IngestResult:
    """One request, one transaction (the writer groups requests with `store`)."""
    return store([prepare(target_id, items, allowed_policies, max_output)])[0]


def _insert_new(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    cursor = (ScriptExecution.insert_many(rows).on_conflict_ignore()
              .returning(ScriptExecution.id).execute())
    return [row[0] if isinstance(row, tuple) else row.id for row in cursor]
