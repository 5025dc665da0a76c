"""The two records the agent sends to the server, typed: `ExecutionReport` and `SecurityEvent`.

Each record is made once (its `id` is chosen before the run or at the refusal and never
changes, which is what makes reporting exactly-once), stored in the spool as its
`to_json()`, read back with `from_json()` and sent as-is. Their JSON is the body item of
`POST /api/v1/agent/executions` and `POST /api/v1/agent/security-events`; a contract
test (`tests/agent/test_wire_contract.py`) validates normal, interrupted and shortened
records against the server's request schema, so the two ends cannot drift apart.

`from_json` reads what any earlier agent wrote (a spool survives an upgrade): fields an
older agent did not write default to None; a record without the required fields is a
`ValueError`, which the spool turns into a set-aside `.corrupt` file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

INTERRUPTED_MESSAGE = "interrupted: the agent stopped while the script was running"


def _required(data: Any, key: str, kind: type) -> Any:
    if not isinstance(data, dict):
        raise ValueError("record is not a JSON object")
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"record.{key}: missing or not a {kind.__name__}")
    return value


@dataclass(frozen=True)
class ExecutionReport:
    """One run: written as a marker before it starts, completed when it ends."""

    id: str
    policy_id: int | None
    script_name: str
    script_version: str
    script_hash: str
    started_at: str
    trigger: str | None = None  # "schedule" | "once" | "force"
    force_token: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    success: bool = False
    stdout: str = ""
    stderr: str = ""
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ExecutionReport:
        _required(data, "id", str)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("script_name", "")
        values.setdefault("script_version", "")
        values.setdefault("script_hash", "")
        values.setdefault("started_at", data.get("finished_at") or "")
        values.setdefault("policy_id", None)
        for text in ("stdout", "stderr"):
            values[text] = values.get(text) or ""
        values["success"] = values.get("success") is True
        return cls(**values)

    def interrupted(self, finished_at: str) -> ExecutionReport:
        """The report for a run whose outcome nobody saw (same id as its marker)."""
        return replace(self, finished_at=finished_at, duration_ms=self.duration_ms or 0,
                       exit_code=None, success=False, stdout="", stderr="",
                       error_message=INTERRUPTED_MESSAGE)

    def shortened(self, keep: int) -> ExecutionReport:
        """The same report with stdout/stderr cut to their last `keep` characters."""
        def cut(text: str) -> str:
            if len(text) <= keep:
                return text
            return f"[aami-agent: cut to the last {keep} characters to fit]\n{text[-keep:]}"
        return replace(self, stdout=cut(self.stdout), stderr=cut(self.stderr))


@dataclass(frozen=True)
class SecurityEvent:
    """One refusal of a script by this node's verification."""

    id: str
    occurred_at: str
    reason: str
    policy_id: int | None = None
    script_name: str = ""
    script_version: str = ""
    script_hash: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> SecurityEvent:
        _required(data, "id", str)
        _required(data, "reason", str)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("occurred_at", "")
        for text in ("script_name", "script_version", "script_hash", "message"):
            values[text] = values.get(text) or ""
        return cls(**values)
