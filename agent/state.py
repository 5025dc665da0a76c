"""The agent's trusted state, with one owner: `TrustedState` (file `state.json`).

In the spirit of python-tuf ngclient's `TrustedMetadataSet`: everything the node
trusts across restarts lives behind one object, and only its methods change it:

- identity: the agent token (the file is mode 0600; the token never appears in
  `status`), target id, hostname;
- the last *verified* assignment set and its ETag, so the node keeps running them while
  the server is down (graceful degradation). `accept()` takes a set the poller has
  already verified, in one save; `refuse_policy()` drops one policy that failed
  re-verification before a run;
- the highest accepted version per script name: the rollback floor. It only ever
  rises (`accept()` never lowers it), and it survives a restart, or a restart would
  reopen the door to an old vulnerable version;
- the intervals and groups the server set (`set_intervals()` is the only place they
  change, whichever answer carried them).

Saves are grouped: each method saves once, and `batch()` folds several changes into
a single write. Scheduling memory and counters change on every run; they belong to
the runner (`runbook.RunBook`, file `runs.json`), so a run no longer rewrites every
signed envelope.

Written atomically through `atomic_write`. A file that cannot be parsed is moved aside
as `state.json.corrupt-<timestamp>` with a warning and the agent starts fresh rather
than crash-looping on every node with a bad disk block.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aami.agent.atomicfile import atomic_write
from aami.agent.wire import Assignment
from aami.trust.statement import parse_version

log = logging.getLogger("aami.agent.state")

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class AgentState:
    """What `state.json` holds (the record; `TrustedState` is its only writer)."""

    target_id: int | None = None
    agent_token: str | None = None
    hostname: str | None = None
    assignments_etag: str | None = None
    assignments: list[dict[str, Any]] = field(default_factory=list)
    highest_versions: dict[str, str] = field(default_factory=dict)
    poll_interval: float | None = None
    heartbeat_interval: float | None = None
    groups: list[str] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        return bool(self.agent_token)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("unknown state format")
        known = {f for f in cls.__dataclass_fields__}
        state = cls(**{k: v for k, v in data.items() if k in known})
        # Type checks on the parts other modules index into.
        for name in ("assignments", "groups"):
            if not isinstance(getattr(state, name), list):
                raise ValueError(f"{name} is not a list")
        if not isinstance(state.highest_versions, dict):
            raise ValueError("highest_versions is not a mapping")
        return state


class StateStore:
    """Reads and writes `state_dir/state.json`."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE

    def load_raw(self) -> dict[str, Any]:
        """The parsed file ({} when absent or set aside as corrupted)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            AgentState.from_json(data)
            return dict(data)
        except (ValueError, TypeError) as exc:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.path, aside)
            log.warning(
                "state file %s is corrupted (%s); moved aside to %s, starting fresh "
                "(the agent re-registers if a bootstrap token is configured)",
                self.path, exc, aside.name,
            )
            return {}

    def load(self) -> AgentState:
        raw = self.load_raw()
        return AgentState.from_json(raw) if raw else AgentState()

    def save(self, state: AgentState) -> None:
        data = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
        atomic_write(self.path, data, mode=0o600)


class TrustedState:
    """The one owner of `state.json` (see the module docstring)."""

    def __init__(self, store: StateStore, state: AgentState | None = None) -> None:
        self._store = store
        self._state = state if state is not None else store.load()
        self._depth = 0
        self._dirty = False

    # -- reading ---------------------------------------------------------------------

    @property
    def record(self) -> AgentState:
        """The record, for rendering `status` (callers must not change it)."""
        return self._state

    @property
    def agent_token(self) -> str | None:
        return self._state.agent_token

    @property
    def target_id(self) -> int | None:
        return self._state.target_id

    @property
    def etag(self) -> str | None:
        return self._state.assignments_etag

    @property
    def highest_versions(self) -> Mapping[str, str]:
        return MappingProxyType(self._state.highest_versions)

    @property
    def groups(self) -> list[str]:
        return list(self._state.groups)

    def assignments(self) -> list[Assignment]:
        """The verified set (parsed afresh: stored entries from an older agent that no
        longer parse are skipped, not fatal)."""
        out = []
        for item in self._state.assignments:
            try:
                out.append(Assignment.from_json(item))
            except Exception as exc:
                log.warning("ignoring a stored assignment that no longer parses: %s", exc)
        return out

    def poll_interval(self, default: float) -> float:
        return self._state.poll_interval or default

    def heartbeat_interval(self, default: float) -> float:
        return self._state.heartbeat_interval or default

    # -- changing (each saves once; `batch()` groups them) ---------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Fold every change inside into one write, at the end."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._dirty:
                self._save()

    def _changed(self) -> None:
        self._dirty = True
        if self._depth == 0:
            self._save()

    def _save(self) -> None:
        self._store.save(self._state)
        self._dirty = False

    def registered(self, *, target_id: int, agent_token: str, hostname: str) -> None:
        self._state.target_id = target_id
        self._state.agent_token = agent_token
        self._state.hostname = hostname
        self._changed()

    def forget_registration(self) -> None:
        """The server forgot us: drop identity and ETag, keep the rollback floor."""
        self._state.target_id = None
        self._state.agent_token = None
        self._state.assignments_etag = None
        self._changed()

    def set_intervals(self, poll: float, heartbeat: float) -> None:
        """The server's intervals (registration, heartbeat and config answers)."""
        if (self._state.poll_interval, self._state.heartbeat_interval) != (poll, heartbeat):
            self._state.poll_interval = float(poll)
            self._state.heartbeat_interval = float(heartbeat)
            self._changed()

    def set_groups(self, groups: Sequence[str]) -> None:
        if list(groups) != self._state.groups:
            self._state.groups = list(groups)
            self._changed()

    def accept(self, etag: str, verified: Sequence[tuple[Assignment, dict[str, Any], str]]) -> None:
        """A verified assignment set: (assignment, raw JSON, signed version) per policy.

        The caller verified every entry against the current floor; this raises the
        floor to each accepted version (rollback: the floor never goes down)."""
        for assignment, _, version in verified:
            self._raise_floor(assignment.script.name, version)
        ordered = sorted(verified, key=lambda v: v[0].policy_id)
        self._state.assignments = [raw for _, raw, _ in ordered]
        self._state.assignments_etag = etag
        self._changed()

    def _raise_floor(self, name: str, version: str) -> None:
        current = self._state.highest_versions.get(name)
        if current is None or parse_version(version) > parse_version(current):
            self._state.highest_versions[name] = version

    def refuse_policy(self, policy_id: int) -> None:
        """Out of the active set until the server's answer changes."""
        self._state.assignments = [
            raw for raw in self._state.assignments if raw.get("policy_id") != policy_id
        ]
        self._changed()

    def save(self) -> None:
        """Write now (at shutdown, and after `batch()` users that must be durable)."""
        self._save()


def ensure_state_dir(state_dir: str | os.PathLike[str]) -> Path:
    path = Path(state_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
