"""The runner's memory across restarts: `runs.json` in the state directory.

- schedule memory: last start per interval policy, the once-key per once policy, the
  force tokens already honoured. It is written *before* a run starts, so a crash can
  never cause a second run of a once policy or a replayed force-run;
- counters reported in heartbeats, and the time of the last successful poll.

It changes on every run, so it lives apart from the trusted set (`state.TrustedState`,
which carries every signed envelope and changes only when the server's answer does).
An agent upgraded from the single-file layout finds these fields in `state.json`;
`RunBook.load` takes them from there once and writes `runs.json` at once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aami.agent.atomicfile import atomic_write
from aami.agent.scheduler import RunDecision, ScheduleMemory, once_key

log = logging.getLogger("aami.agent.runbook")

RUNS_FILE = "runs.json"
RUNS_VERSION = 1


@dataclass
class RunBook:
    last_runs: dict[str, float] = field(default_factory=dict)
    once_done: dict[str, str] = field(default_factory=dict)
    force_done: list[str] = field(default_factory=list)
    scripts_total: int = 0
    scripts_success: int = 0
    scripts_failed: int = 0
    last_successful_poll: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunBook:
        known = {f for f in cls.__dataclass_fields__}
        book = cls(**{k: v for k, v in data.items() if k in known})
        for name in ("last_runs", "once_done"):
            if not isinstance(getattr(book, name), dict):
                raise ValueError(f"{name} is not a mapping")
        if not isinstance(book.force_done, list):
            raise ValueError("force_done is not a list")
        return book

    def to_json(self) -> dict[str, Any]:
        return {"version": RUNS_VERSION, **asdict(self)}

    def memory(self, running: Collection[int]) -> ScheduleMemory:
        return ScheduleMemory(self.last_runs, self.once_done, set(self.force_done), set(running))

    def remember(self, decision: RunDecision, *, now: float, force_kept: int) -> None:
        a, key = decision.assignment, str(decision.assignment.policy_id)
        if decision.trigger == "force" and a.force_token:
            if a.force_token not in self.force_done:
                self.force_done.append(a.force_token)
            del self.force_done[:-force_kept]
        elif decision.trigger == "once":
            self.once_done[key] = once_key(a.script.sha256, a.params)
        else:
            self.last_runs[key] = now

    def count(self, success: bool) -> None:
        self.scripts_total += 1
        if success:
            self.scripts_success += 1
        else:
            self.scripts_failed += 1


class RunBookStore:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / RUNS_FILE

    def load(self, legacy: Mapping[str, Any]) -> RunBook:
        """`runs.json`, or (first start after an upgrade) the fields of the old
        single `state.json`, passed in as `legacy`."""
        try:
            return RunBook.from_json(json.loads(self.path.read_bytes()))
        except FileNotFoundError:
            pass
        except (ValueError, TypeError) as exc:
            aside = self.path.with_name(f"{RUNS_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.path, aside)
            log.warning("%s is corrupted (%s); moved aside to %s, schedule memory starts empty",
                        self.path, exc, aside.name)
            return RunBook()
        try:
            book = RunBook.from_json(legacy)
        except (ValueError, TypeError):
            book = RunBook()
        if legacy:
            self.save(book)  # before state.json is rewritten without these fields
        return book

    def save(self, book: RunBook) -> None:
        atomic_write(self.path, json.dumps(book.to_json(), sort_keys=True).encode(), mode=0o600)
