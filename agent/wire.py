"""Agent API wire objects: typed dataclasses parsed from the server's JSON.

Parsing is pure and strict: a response that does not have the documented shape is a
`ProtocolError`, never a half-filled object. Note that nothing here is trusted: the
script reference (name, version, sha256, envelope) is only a claim until
`trust.verify.verify_script` accepts it in `agent.cache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ProtocolError(Exception):
    """The server answered with a body that does not match the Agent API contract."""


def _get(data: Any, key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ProtocolError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
        raise ProtocolError(f"{where}.{key}: unexpected type {type(value).__name__}")
    return value


MAX_INTERVAL = 31_536_000  # a year, as the server's schema allows


def _seconds(data: Any, key: str, where: str) -> int:
    """An interval the agent will sleep on: 0 would spin a loop against the server,
    an absurd value would overflow the event loop's timer."""
    value = _get(data, key, int, where)
    if not 1 <= value <= MAX_INTERVAL:
        raise ProtocolError(f"{where}.{key}: {value} is not between 1 and {MAX_INTERVAL}")
    return int(value)


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


@dataclass(frozen=True)
class Registration:
    target_id: int
    agent_token: str
    poll_interval_seconds: int
    heartbeat_interval_seconds: int

    @classmethod
    def from_json(cls, data: Any) -> Registration:
        w = "register"
        return cls(
            target_id=_get(data, "target_id", int, w),
            agent_token=_get(data, "agent_token", str, w),
            poll_interval_seconds=_seconds(data, "poll_interval_seconds", w),
            heartbeat_interval_seconds=_seconds(data, "heartbeat_interval_seconds", w),
        )


@dataclass(frozen=True)
class Intervals:
    poll_interval_seconds: int
    heartbeat_interval_seconds: int

    @classmethod
    def from_json(cls, data: Any) -> Intervals:
        return cls(
            poll_interval_seconds=_seconds(data, "poll_interval_seconds", "intervals"),
            heartbeat_interval_seconds=_seconds(data, "heartbeat_interval_seconds", "intervals"),
        )


@dataclass(frozen=True)
class RemoteConfig:
    poll_interval_seconds: int
    heartbeat_interval_seconds: int
    target_id: int
    hostname: str
    groups: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Any) -> RemoteConfig:
        w = "config"
        return cls(
            poll_interval_seconds=_seconds(data, "poll_interval_seconds", w),
            heartbeat_interval_seconds=_seconds(data, "heartbeat_interval_seconds", w),
            target_id=_get(data, "target_id", int, w),
            hostname=_get(data, "hostname", str, w),
            groups=tuple(str(g) for g in _get(data, "groups", list, w)),
        )


@dataclass(frozen=True)
class ScriptRef:
    name: str
    version: str
    sha256: str
    envelope: dict[str, Any]


@dataclass(frozen=True)
class Assignment:
    policy_id: int
    policy_name: str
    script: ScriptRef
    params: dict[str, Any]
    mode: str  # "interval" | "once"
    interval_seconds: int | None
    timeout_seconds: int | None
    run_as: str | None
    force_token: str | None

    @classmethod
    def from_json(cls, data: Any) -> Assignment:
        w = "assignment"
        script = _get(data, "script", dict, w)
        schedule = _get(data, "schedule", dict, w)
        mode = _get(schedule, "mode", str, "schedule")
        interval = schedule.get("interval_seconds")
        if mode not in ("interval", "once"):
            raise ProtocolError(f"schedule.mode: unknown mode {mode!r}")
        if mode == "interval" and (not isinstance(interval, int) or interval < 1):
            raise ProtocolError("schedule.interval_seconds: required for interval mode")
        timeout = data.get("timeout_seconds")
        if timeout is not None and (not isinstance(timeout, int) or timeout < 1):
            raise ProtocolError("timeout_seconds: expected a positive integer or null")
        return cls(
            policy_id=_get(data, "policy_id", int, w),
            policy_name=str(data.get("policy_name") or ""),
            script=ScriptRef(
                name=_get(script, "name", str, "script"),
                version=_get(script, "version", str, "script"),
                sha256=_get(script, "sha256", str, "script").lower(),
                envelope=_get(script, "envelope", dict, "script"),
            ),
            params=_get(data, "params", dict, w) if data.get("params") is not None else {},
            mode=mode,
            interval_seconds=interval if mode == "interval" else None,
            timeout_seconds=timeout,
            run_as=_opt_str(data, "run_as"),
            force_token=_opt_str(data, "force_token"),
        )


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"assignment.{key}: expected a string or null")
    return value


@dataclass(frozen=True)
class AssignmentSet:
    etag: str
    assignments: tuple[Assignment, ...]
    raw: tuple[dict[str, Any], ...]  # kept verbatim in the state file for degraded mode

    @classmethod
    def from_json(cls, data: Any) -> AssignmentSet:
        items = _get(data, "assignments", list, "assignments")
        return cls(
            etag=_get(data, "etag", str, "assignments"),
            assignments=tuple(Assignment.from_json(item) for item in items),
            raw=tuple(items),
        )


@dataclass(frozen=True)
class Ack:
    accepted: int
    duplicates: int

    @classmethod
    def from_json(cls, data: Any) -> Ack:
        return cls(
            accepted=_get(data, "accepted", int, "ack"),
            duplicates=_get(data, "duplicates", int, "ack"),
        )
