"""The agent's memory across restarts: one JSON file, `state.json`, in the state dir.

It holds what must survive a restart or a server outage:

- the agent token (the file is mode 0600; the token never appears in `status`),
- the last verified assignments, so the node keeps running them while the server is
  down (graceful degradation),
- the highest accepted version per script name (rollback protection must survive a
  restart, or a restart would reopen the door to an old vulnerable version),
- schedule memory: last start per interval policy, the once-key per once policy, the
  force tokens already honoured (so a restart neither repeats nor replays them),
- counters reported in heartbeats.

Written atomically through `atomic_write`. A file that cannot be parsed is moved aside
as `state.json.corrupt-<timestamp>` with a warning and the agent starts fresh rather
than crash-looping on every node with a bad disk block.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aami.agent.atomicfile import atomic_write

log = logging.getLogger("aami.agent.state")

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class AgentState:
    target_id: int | None = None
    agent_token: str | None = None
    hostname: str | None = None
    assignments_etag: str | None = None
    assignments: list[dict[str, Any]] = field(default_factory=list)
    highest_versions: dict[str, str] = field(default_factory=dict)
    last_runs: dict[str, float] = field(default_factory=dict)
    once_done: dict[str, str] = field(default_factory=dict)
    force_done: list[str] = field(default_factory=list)
    scripts_total: int = 0
    scripts_success: int = 0
    scripts_failed: int = 0
    poll_interval: float | None = None
    heartbeat_interval: float | None = None
    last_successful_poll: float | None = None
    groups: list[str] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        return bool(self.agent_token)

    def forget_registration(self) -> None:
        """The server forgot us: drop identity, keep rollback and schedule memory."""
        self.target_id = None
        self.agent_token = None
        self.assignments_etag = None

    def remember_force(self, token: str, keep: int) -> None:
        if token not in self.force_done:
            self.force_done.append(token)
        del self.force_done[:-keep]

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("unknown state format")
        known = {f for f in cls.__dataclass_fields__}
        state = cls(**{k: v for k, v in data.items() if k in known})
        # Type checks on the parts other modules index into.
        for name in ("assignments", "force_done", "groups"):
            if not isinstance(getattr(state, name), list):
                raise ValueError(f"{name} is not a list")
        for name in ("highest_versions", "last_runs", "once_done"):
            if not isinstance(getattr(state, name), dict):
                raise ValueError(f"{name} is not a mapping")
        return state


class StateStore:
    """Loads and saves `AgentState` in `state_dir/state.json`."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE

    def load(self) -> AgentState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AgentState()
        try:
            return AgentState.from_json(json.loads(raw))
        except (ValueError, TypeError) as exc:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.path, aside)
            log.warning(
                "state file %s is corrupted (%s); moved aside to %s, starting fresh "
                "(the agent re-registers if a bootstrap token is configured)",
                self.path, exc, aside.name,
            )
            return AgentState()

    def save(self, state: AgentState) -> None:
        data = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
        atomic_write(self.path, data, mode=0o600)


def ensure_state_dir(state_dir: str | os.PathLike[str]) -> Path:
    path = Path(state_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
