"""Step 5: results are written to disk (fsync) before anyone tries to report them.

Layout under `state_dir/spool/`:

    executions/<seq>-<id>.json   finished runs waiting to be reported
    executions/<id>.running      marker written just before a script starts
    events/<seq>-<id>.json       security events (refusals) waiting to be reported
    <kind>/dropped               how many records the bound forced us to drop

Why: a result that lives only in memory is lost by a crash, a reboot or an OOM kill,
and a run cut short by `kill -9` would vanish without trace. The running marker
carries the execution id that was made before the run; after a restart each marker
without a finished record becomes one "interrupted" record with that same id. The
server de-duplicates by id, so the run is reported exactly once whatever moment the
crash hit.

The spool is bounded (`Limits.spool_max_records`): when the server stays away long
enough, the oldest records are dropped and counted in `dropped` (shown by `status`,
in `/metrics` and in the logs) instead of filling the disk.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from aami.agent.atomicfile import atomic_write, fsync_dir
from aami.agent.records import INTERRUPTED_MESSAGE, ExecutionReport, SecurityEvent

log = logging.getLogger("aami.agent.spool")

__all__ = ["INTERRUPTED_MESSAGE", "EventSpool", "ExecutionSpool", "Spool"]


R = TypeVar("R")


class Spool(Generic[R]):
    """A directory of JSON records, oldest first, bounded, durable.

    `decode` turns a stored JSON object back into the typed record (the plain spool
    hands back the dict); a stored object it refuses is set aside like a torn file.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_records: int,
                 decode: Callable[[Any], R] | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_records = max_records
        self._decode: Callable[[Any], R] = decode or (lambda data: data)
        self._dropped_path = self.dir / "dropped"

    # -- bookkeeping -----------------------------------------------------------------

    def _records(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("*.json") if not p.name.startswith("."))

    def count(self) -> int:
        return len(self._records())

    @property
    def dropped(self) -> int:
        try:
            return int(self._dropped_path.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def add_dropped(self, n: int) -> None:
        atomic_write(self._dropped_path, str(self.dropped + n).encode(), mode=0o600)

    def has(self, record_id: str) -> bool:
        return any(self.dir.glob(f"*-{record_id}.json"))

    # -- write and read -----------------------------------------------------------------

    def put(self, record: R) -> None:
        """Durably store one record (its `id` names the file)."""
        data = _encode(record)
        name = f"{time.time_ns():020d}-{data['id']}.json"
        atomic_write(self.dir / name, json.dumps(data, sort_keys=True).encode())
        records = self._records()
        excess = len(records) - self.max_records
        if excess > 0:
            for path in records[:excess]:
                path.unlink(missing_ok=True)
            fsync_dir(self.dir)
            self.add_dropped(excess)
            log.error(
                "spool %s is full (%d records): dropped the %d oldest; %d dropped in total",
                self.dir.name, self.max_records, excess, self.dropped,
            )

    def pending(self, limit: int) -> list[tuple[Path, R]]:
        """Up to `limit` records, oldest first; unreadable files are set aside."""
        out: list[tuple[Path, R]] = []
        for path in self._records():
            if len(out) >= limit:
                break
            try:
                out.append((path, self._decode(json.loads(path.read_bytes()))))
            except (OSError, ValueError, TypeError) as exc:
                log.error("spool record %s is unreadable (%s); set aside", path.name, exc)
                os.replace(path, path.with_name(path.name + ".corrupt"))
        return out

    def remove(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
        if paths:
            fsync_dir(self.dir)


def _encode(record: Any) -> dict[str, Any]:
    data = record.to_json() if hasattr(record, "to_json") else dict(record)
    if not isinstance(data.get("id"), str):
        raise ValueError("a spooled record needs a string id")
    return data


class EventSpool(Spool[SecurityEvent]):
    """Security events waiting to be reported."""

    def __init__(self, directory: str | os.PathLike[str], *, max_records: int) -> None:
        super().__init__(directory, max_records=max_records, decode=SecurityEvent.from_json)


class ExecutionSpool(Spool[ExecutionReport]):
    """Execution reports, and the markers of the runs that were in flight."""

    def __init__(self, directory: str | os.PathLike[str], *, max_records: int) -> None:
        super().__init__(directory, max_records=max_records, decode=ExecutionReport.from_json)

    def mark_running(self, report: ExecutionReport) -> None:
        """Before the script starts: enough to report the run if we die mid-way."""
        atomic_write(self.dir / f"{report.id}.running", json.dumps(report.to_json()).encode())

    def complete(self, report: ExecutionReport) -> None:
        """The finished record first, then the marker goes (a crash between the two
        leaves both; recovery sees the record and only removes the marker)."""
        self.put(report)
        (self.dir / f"{report.id}.running").unlink(missing_ok=True)
        fsync_dir(self.dir)

    def running_ids(self) -> list[str]:
        return [p.name[: -len(".running")] for p in self.dir.glob("*.running")]

    def recover_interrupted(self, finished_at: str) -> int:
        """Turn each orphaned marker into one interrupted record. Returns how many."""
        recovered = 0
        for marker in sorted(self.dir.glob("*.running")):
            record_id = marker.name[: -len(".running")]
            if not self.has(record_id):
                try:
                    started = ExecutionReport.from_json(json.loads(marker.read_bytes()))
                except (OSError, ValueError, TypeError):
                    log.error("running marker %s is unreadable; set aside", marker.name)
                    os.replace(marker, marker.with_name(marker.name + ".corrupt"))
                    continue
                self.put(started.interrupted(finished_at))
                recovered += 1
                log.warning(
                    "execution %s of %s was interrupted by an agent stop; reporting it",
                    record_id, started.script_name,
                )
            marker.unlink(missing_ok=True)
        fsync_dir(self.dir)
        return recovered

