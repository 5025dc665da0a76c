"""Policy files (the `aami policy apply` format, shared by the CLI and the server's bundle
import): YAML in, canonical REST bodies out, and the diff against the server.

Pure functions (no I/O): `parse_policy_file` turns the loaded YAML into canonical
policy dicts or raises `PolicyFileError` naming the path (`policies[2].schedule.interval`);
`plan` compares them with what the server holds and says what to create or update.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aami.trust import MalformedStatement, parse_version
from aami.units import parse_duration

SCOPES = ("global", "group", "target")
MODES = ("interval", "once")
CANONICAL_FIELDS = (
    "name", "script", "version", "scope", "group", "target", "params",
    "schedule", "timeout_seconds", "run_as", "priority", "enabled", "rollout",
)  # fmt: skip
_ITEM_KEYS = {
    "name", "script", "version", "scope", "group", "target", "params",
    "schedule", "timeout", "run_as", "priority", "enabled", "rollout",
}  # fmt: skip
DEFAULT_PRIORITY = 0  # the server's default too, so YAML and REST agree
# The server's defaults for a rollout block (server/services/rollouts.py, docs/rollouts.md).
ROLLOUT_DEFAULTS: dict[str, Any] = {"wait_seconds": 600, "min_runs": 1,
                                    "max_failure_ratio": 0.1, "on_failure": "halt"}
_ROLLOUT_KEYS = {"steps", "wait", "min_runs", "max_failure_ratio", "on_failure"}


class PolicyFileError(ValueError):
    """`str()` is `<path>: <problem>`, ready to follow the file name."""


@dataclass(frozen=True)
class Change:
    action: str  # "create" | "update" | "unchanged"
    policy: dict[str, Any]
    existing_id: Any = None
    fields: tuple[str, ...] = ()


def parse_policy_file(data: object) -> list[dict[str, Any]]:
    if not isinstance(data, Mapping) or set(data) != {"policies"}:
        raise PolicyFileError("(top level): must be a mapping with one key, `policies`")
    items = data["policies"]
    if not isinstance(items, list):
        raise PolicyFileError("policies: must be a list")
    policies, seen = [], set()
    for index, item in enumerate(items):
        policy = parse_policy(item, f"policies[{index}]")
        if policy["name"] in seen:
            raise PolicyFileError(f"policies[{index}].name: {policy['name']!r} appears twice")
        seen.add(policy["name"])
        policies.append(policy)
    return policies


def parse_policy(item: object, path: str) -> dict[str, Any]:
    """One YAML item -> the canonical REST body (durations become seconds)."""
    if not isinstance(item, Mapping):
        raise PolicyFileError(f"{path}: must be a mapping")
    unknown = sorted(set(map(str, item)) - _ITEM_KEYS)
    if unknown:
        raise PolicyFileError(f"{path}.{unknown[0]}: unknown key")
    scope = item.get("scope", "global")
    if scope not in SCOPES:
        raise PolicyFileError(f"{path}.scope: must be one of {', '.join(SCOPES)}")
    policy = {
        "name": _text(item, "name", path, required=True),
        "script": _text(item, "script", path, required=True),
        "version": _version(item.get("version", "latest"), f"{path}.version"),
        "scope": scope,
        "group": _text(item, "group", path),
        "target": _text(item, "target", path),
        "params": _params(item.get("params", {}), f"{path}.params"),
        "schedule": _schedule(item.get("schedule"), f"{path}.schedule"),
        "timeout_seconds": _seconds(item.get("timeout"), f"{path}.timeout"),
        "run_as": _text(item, "run_as", path),
        "priority": _integer(item.get("priority", DEFAULT_PRIORITY), f"{path}.priority"),
        "enabled": _boolean(item.get("enabled", True), f"{path}.enabled"),
        "rollout": _rollout(item.get("rollout"), f"{path}.rollout"),
    }
    _check_scope(policy, path)
    return policy


def plan(wanted: list[dict[str, Any]], existing: Mapping[str, Mapping[str, Any]]) -> list[Change]:
    """Per wanted policy: create it, update it (naming the changed fields) or leave it."""
    changes = []
    for policy in wanted:
        current = existing.get(policy["name"])
        if current is None:
            changes.append(Change("create", policy))
            continue
        differing = tuple(f for f in CANONICAL_FIELDS if not _same(policy[f], current.get(f)))
        action = "update" if differing else "unchanged"
        changes.append(Change(action, policy, current.get("id"), differing))
    return changes


def _same(a: object, b: object) -> bool:
    # JSON semantics: 1 == 1.0 but True != 1; dict key order does not matter.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_scope(policy: dict[str, Any], path: str) -> None:
    scope = policy["scope"]
    for key in ("group", "target"):
        if scope == key and policy[key] is None:
            raise PolicyFileError(f"{path}.{key}: required with scope {scope}")
        if scope != key and policy[key] is not None:
            raise PolicyFileError(f"{path}.{key}: not allowed with scope {scope}")


def _text(item: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> Any:
    value = item.get(key)
    if value is None:
        if required:
            raise PolicyFileError(f"{path}.{key}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise PolicyFileError(f"{path}.{key}: must be a non-empty string")
    return value


def _version(value: object, path: str) -> str:
    if value == "latest":
        return "latest"
    try:
        parse_version(value)  # type: ignore[arg-type]
    except MalformedStatement:
        raise PolicyFileError(f"{path}: {value!r} must be latest or X.Y.Z") from None
    return str(value)


def _params(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise PolicyFileError(f"{path}: must be a mapping of parameter names to values")
    return dict(value)


def _schedule(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyFileError(f"{path}: required, e.g. {{mode: interval, interval: 60s}}")
    mode = value.get("mode")
    if mode not in MODES:
        raise PolicyFileError(f"{path}.mode: must be interval or once")
    unknown = sorted(set(map(str, value)) - {"mode", "interval"})
    if unknown:
        raise PolicyFileError(f"{path}.{unknown[0]}: unknown key")
    if mode == "once":
        if "interval" in value:
            raise PolicyFileError(f"{path}.interval: not allowed with mode once")
        return {"mode": "once", "interval_seconds": None}
    if "interval" not in value:
        raise PolicyFileError(f"{path}.interval: required with mode interval")
    return {"mode": "interval", "interval_seconds": _seconds(value["interval"], f"{path}.interval")}


def _seconds(value: object, path: str) -> int | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise PolicyFileError(f"{path}: {exc}") from None
    if seconds < 1 or seconds != int(seconds):
        raise PolicyFileError(f"{path}: {value!r} must be a whole number of seconds, at least 1s")
    return int(seconds)


def _rollout(value: object, path: str) -> dict[str, Any] | None:
    """A rollout block in its canonical form (the server checks it again)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PolicyFileError(f"{path}: must be a mapping")
    unknown = sorted(set(map(str, value)) - _ROLLOUT_KEYS)
    if unknown:
        raise PolicyFileError(f"{path}.{unknown[0]}: unknown key")
    steps = value.get("steps")
    if (not isinstance(steps, list) or not steps
            or any(not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 100
                   for s in steps)
            or any(b <= a for a, b in itertools.pairwise(steps)) or steps[-1] != 100):
        raise PolicyFileError(f"{path}.steps: a list of ascending percentages ending at 100")
    ratio = value.get("max_failure_ratio", ROLLOUT_DEFAULTS["max_failure_ratio"])
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
        raise PolicyFileError(f"{path}.max_failure_ratio: a number from 0 to 1")
    on_failure = value.get("on_failure", ROLLOUT_DEFAULTS["on_failure"])
    if on_failure not in ("halt", "rollback"):
        raise PolicyFileError(f"{path}.on_failure: must be halt or rollback")
    wait = value.get("wait")
    return {"steps": list(steps),
            "wait_seconds": ROLLOUT_DEFAULTS["wait_seconds"] if wait is None
            else _seconds(wait, f"{path}.wait"),
            "min_runs": _integer(value.get("min_runs", ROLLOUT_DEFAULTS["min_runs"]),
                                 f"{path}.min_runs"),
            "max_failure_ratio": float(ratio), "on_failure": on_failure}


def _integer(value: object, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PolicyFileError(f"{path}: must be an integer")
    return value


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyFileError(f"{path}: must be true or false")
    return value
