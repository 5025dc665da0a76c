"""Background jobs: long operations with status and progress readable over the API.

A job row is the record; the work runs as an asyncio task in the process that
created it (`server.api.operations.background.JobRunner`). Status moves
queued -> running -> done | failed. A process that stops mid-job marks its jobs
failed ("interrupted") on the way out; one killed outright leaves them `running`,
which the listing shows as they are (no other process can tell a slow job from a
dead one).
"""

from __future__ import annotations

from typing import Any

from aami.server.errors import NotFound
from aami.server.models import Job
from aami.server.timefmt import iso, utcnow

KINDS = ("force_run", "retention", "import")
STATUSES = ("queued", "running", "done", "failed")


def to_wire(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "status": job.status,
        "progress_done": job.progress_done, "progress_total": job.progress_total,
        "detail": job.detail or {}, "error": job.error,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def create(kind: str, *, total: int = 0, detail: dict[str, Any] | None = None) -> int:
    return int(Job.create(kind=kind, progress_total=total, detail=detail or {}).id)


def start(job_id: int, *, total: int | None = None) -> None:
    changes: dict[str, Any] = {"status": "running", "started_at": utcnow()}
    if total is not None:
        changes["progress_total"] = total
    Job.update(**changes).where(Job.id == job_id).execute()


def progress(job_id: int, done: int, *, total: int | None = None,
             detail: dict[str, Any] | None = None) -> None:
    changes: dict[str, Any] = {"progress_done": done}
    if total is not None:
        changes["progress_total"] = total
    if detail is not None:
        changes["detail"] = detail
    Job.update(**changes).where(Job.id == job_id).execute()


def finish(job_id: int, *, error: str | None = None, detail: dict[str, Any] | None = None
           ) -> None:
    changes: dict[str, Any] = {"status": "failed" if error else "done",
                               "finished_at": utcnow(), "error": error}
    if detail is not None:
        changes["detail"] = detail
    Job.update(**changes).where(Job.id == job_id).execute()


def interrupt(job_ids: list[int], message: str) -> None:
    if job_ids:
        Job.update(status="failed", error=message, finished_at=utcnow()).where(
            Job.id.in_(job_ids), Job.status.in_(["queued", "running"])).execute()


def get(job_id: int) -> dict[str, Any]:
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", details={"id": job_id})
    return to_wire(job)


def list_jobs(*, kind: str | None, status: str | None, limit: int, offset: int
              ) -> tuple[list[dict[str, Any]], int]:
    query = Job.select().order_by(Job.id.desc())
    if kind:
        query = query.where(Job.kind == kind)
    if status:
        query = query.where(Job.status == status)
    return [to_wire(j) for j in query.limit(limit).offset(offset)], query.count()
