"""Policies: which signed script runs where, with which parameters, how often.

The wire form is canonical (`interval_seconds`, `timeout_seconds`); the YAML short
forms of docs/architecture.md (`schedule.interval: 60s`, `timeout: 30s`) are accepted on input
and never echoed back. `normalise` (pure) turns a request body into a `PolicySpec`
and checks every rule that needs no database; `_check_references` checks the rest
(the group, target, script and version exist; params and run_as are allowed by the
signed statement of the script version the policy resolves to today).

Params are checked as the agent will first see them: the script's schema defaults
overlaid with the policy's params. The agent checks again before every run, against
whatever version it is then given; this check only gives the operator an early error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aami.server.db import write_transaction
from aami.server.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from aami.server.models import Group, Policy, Target
from aami.server.services import revision, rollouts, scripts
from aami.server.timefmt import iso, utcnow
from aami.trust.errors import ParamsInvalid
from aami.trust.schema import schema_defaults, validate_params
from aami.units import parse_duration

MIN_INTERVAL_SECONDS = 1
MAX_SECONDS = 31_536_000


@dataclass(frozen=True)
class PolicySpec:
    name: str
    script: str
    version: str
    scope: str
    group: str | None
    target: str | None
    params: dict[str, Any]
    mode: str
    interval_seconds: int | None
    timeout_seconds: int | None
    run_as: str | None
    priority: int
    enabled: bool
    rollout: dict[str, Any] | None = None  # canonical (services/rollouts.py)


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"field": field})


def _seconds(value: Any, field: str) -> int:
    """An integer number of seconds from `60`, `"60s"`, `"5m"`..."""
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise _fail(field, str(exc)) from None
    if seconds != int(seconds) or not MIN_INTERVAL_SECONDS <= seconds <= MAX_SECONDS:
        raise _fail(field, f"must be a whole number of seconds in 1..{MAX_SECONDS}")
    return int(seconds)


def seconds_field(value: Any, field: str) -> int:
    """`_seconds` for other request bodies (force-run expiry, rollout waits)."""
    return _seconds(value, field)


def _one_of(body: dict[str, Any], canonical: str, short: str, root: str) -> int | None:
    if body.get(canonical) is not None and body.get(short) is not None:
        raise _fail(f"{root}.{short}", f"give either {canonical} or {short}, not both")
    if body.get(short) is not None:
        return _seconds(body[short], f"{root}.{short}")
    value = body.get(canonical)
    return None if value is None else int(value)


def normalise(body: dict[str, Any]) -> PolicySpec:
    """The canonical policy for a (schema-checked) request body; raises ValidationFailed."""
    scope = body["scope"]
    group, target = body.get("group"), body.get("target")
    if scope == "group" and not group:
        raise _fail("body.group", "is required with scope group")
    if scope == "target" and not target:
        raise _fail("body.target", "is required with scope target")
    if scope != "group" and group is not None:
        raise _fail("body.group", f"must be null with scope {scope}")
    if scope != "target" and target is not None:
        raise _fail("body.target", f"must be null with scope {scope}")
    schedule = body["schedule"]
    mode = schedule["mode"]
    interval = _one_of(schedule, "interval_seconds", "interval", "body.schedule")
    if mode == "interval" and interval is None:
        raise _fail("body.schedule.interval_seconds", "is required with mode interval")
    if mode == "once" and interval is not None:
        raise _fail("body.schedule.interval_seconds", "must be null with mode once")
    return PolicySpec(
        name=body["name"], script=body["script"], version=body.get("version", "latest"),
        scope=scope, group=group, target=target, params=dict(body.get("params") or {}),
        mode=mode, interval_seconds=interval,
        timeout_seconds=_one_of(body, "timeout_seconds", "timeout", "body"),
        run_as=body.get("run_as"), priority=body.get("priority", 0),
        enabled=body.get("enabled", True),
        rollout=rollouts.normalise_config(body.get("rollout")),
    )


def to_wire(row: Policy) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "script": row.script_name,
        "version": row.version,
        "scope": row.scope,
        "group": row.group.name if row.group is not None else None,
        "target": row.target.hostname if row.target is not None else None,
        "params": row.params,
        "schedule": {"mode": row.schedule_mode, "interval_seconds": row.interval_seconds},
        "timeout_seconds": row.timeout_seconds,
        "run_as": row.run_as,
        "priority": row.priority,
        "enabled": row.enabled,
        "rollout": row.rollout,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _canonical_body(row: Policy) -> dict[str, Any]:
    data = to_wire(row)
    for key in ("id", "created_at", "updated_at"):
        data.pop(key)
    return data


def get(policy_id: int) -> Policy:
    row = Policy.get_or_none(Policy.id == policy_id)
    if row is None:
        raise NotFound(f"policy {policy_id} does not exist", details={"id": policy_id})
    return row


def _unprocessable(field: str, code: str, message: str, **details: Any) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code=code, details={"field": field, **details})


def _check_references(spec: PolicySpec) -> dict[str, Any]:
    """Model field values for `spec`, after checking what it refers to."""
    group = target = None
    if spec.group is not None:
        group = Group.get_or_none(Group.name == spec.group)
        if group is None:
            raise _unprocessable("body.group", "UNKNOWN_GROUP",
                                 f"group {spec.group!r} does not exist")
    if spec.target is not None:
        target = Target.get_or_none(Target.hostname == spec.target)
        if target is None:
            raise _unprocessable("body.target", "UNKNOWN_TARGET",
                                 f"target {spec.target!r} does not exist")
    script = scripts.resolve(spec.script, spec.version)
    if script is None:
        if spec.version != "latest" and scripts.resolve(spec.script, "latest") is not None:
            raise _unprocessable("body.version", "UNKNOWN_VERSION",
                                 f"script {spec.script!r} has no version {spec.version}")
        raise _unprocessable("body.script", "UNKNOWN_SCRIPT",
                             f"script {spec.script!r} has not been uploaded")
    _check_against_statement(spec, script)
    values = asdict(spec)
    values.pop("mode")
    values.pop("script")
    return {**values, "group": group, "target": target, "schedule_mode": spec.mode,
            "script_name": spec.script}


def _check_against_statement(spec: PolicySpec, script: Any) -> None:
    schema = script.params_schema or {}
    try:
        validate_params(schema, {**schema_defaults(schema), **spec.params})
    except ParamsInvalid as exc:
        field = "body." + exc.path
        raise Unprocessable(f"body.{exc} (script {spec.script} {script.version})",
                            code="PARAMS_INVALID",
                            details={"field": field, "reason": exc.reason,
                                     "script_version": script.version}) from None
    allowed = script.run_as
    if spec.run_as is not None and allowed is not None and spec.run_as not in allowed:
        raise _unprocessable("body.run_as", "RUN_AS_NOT_ALLOWED",
                             f"{spec.run_as!r} is not allowed by {spec.script} "
                             f"{script.version} (allowed: {', '.join(allowed)})",
                             reason="run_as_not_allowed")


def _check_name_free(name: str, policy_id: int | None) -> None:
    clash = Policy.select().where(Policy.name == name)
    if policy_id is not None:
        clash = clash.where(Policy.id != policy_id)
    if clash.exists():
        raise Conflict(f"policy {name!r} already exists", details={"field": "body.name"})


def create(body: dict[str, Any]) -> dict[str, Any]:
    spec = normalise(body)
    with write_transaction():
        _check_name_free(spec.name, None)
        row = Policy.create(**_check_references(spec))
        revision.bump()
    return to_wire(row)


def replace(policy_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return _store(policy_id, normalise(body))


def _store(policy_id: int, spec: PolicySpec) -> dict[str, Any]:
    with write_transaction():
        row = get(policy_id)
        _check_name_free(spec.name, policy_id)
        for key, value in _check_references(spec).items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        row.save()
        revision.bump()
    return to_wire(row)


def patch(policy_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply `changes` over the stored policy, then validate the whole as for PUT."""
    with write_transaction():
        merged = _canonical_body(get(policy_id))
        if "timeout" in changes:
            merged.pop("timeout_seconds")
        if "scope" in changes:
            # Moving scope clears the reference the new scope does not use.
            for field in ("group", "target"):
                merged[field] = changes.get(field)
        merged.update(changes)
        try:
            spec = normalise(merged)
        except ValidationFailed as exc:
            # The change itself passed the PATCH schema: what is wrong is the stored
            # policy it would leave behind (a group on a global policy), so 422.
            raise Unprocessable(f"{exc.message} (after applying the change to policy "
                                f"{policy_id})", code="POLICY_INVALID",
                                details=exc.details) from None
        return _store(policy_id, spec)


def delete(policy_id: int) -> None:
    with write_transaction():
        get(policy_id).delete_instance()
        revision.bump()


def list_policies(*, name: str | None, scope: str | None, script: str | None,
                  enabled: bool | None, limit: int, offset: int
                  ) -> tuple[list[dict[str, Any]], int]:
    query = Policy.select().order_by(Policy.name)
    if name:
        query = query.where(Policy.name.contains(name))
    if scope:
        query = query.where(Policy.scope == scope)
    if script:
        query = query.where(Policy.script_name == script)
    if enabled is not None:
        query = query.where(Policy.enabled == enabled)
    return [to_wire(r) for r in query.limit(limit).offset(offset)], query.count()
