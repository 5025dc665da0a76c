"""JSON Schema fragments shared by routes (and so by the OpenAPI document), and the
request bodies that both the API and the web UI check (groups, policies)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ERROR: Schema = {
    "type": "object",
    "required": ["error", "code", "details"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "details": {"type": "object"},
    },
}

ID_PATH: dict[str, Schema] = {"id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}

NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 128,
                "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"}
HOSTNAME: Schema = {"type": "string", "minLength": 1, "maxLength": 253,
                    "pattern": r"^[A-Za-z0-9][A-Za-z0-9.-]*$"}
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}
_PART = r"(0|[1-9]\d{0,8})"
VERSION: Schema = {"type": "string", "pattern": rf"^{_PART}\.{_PART}\.{_PART}$"}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SECONDS: Schema = {"type": "integer", "minimum": 1, "maximum": 31_536_000}


def limit_query(default: int = 50, maximum: int = 500) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}


OFFSET_QUERY: Schema = {"type": "integer", "minimum": 0, "maximum": 10_000_000}

PAGINATION: Schema = {
    "type": "object",
    "required": ["limit"],
    "properties": {
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
        "total": {"type": "integer"},
        "next_cursor": {"type": ["string", "null"]},
    },
}


def list_of(item: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["data", "pagination"],
        "properties": {"data": {"type": "array", "items": item}, "pagination": PAGINATION},
    }


def obj(required: list[str], properties: dict[str, Schema], *, closed: bool = True) -> Schema:
    """An object schema; request bodies are closed (unknown fields are an error)."""
    schema: Schema = {"type": "object", "required": required, "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


def nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


# Request bodies that the web UI's forms check too, by the very same rules.

GROUP_FIELDS = {
    "name": NAME,
    "description": {"type": "string", "maxLength": 2000},
    "priority": {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000},
    "poll_interval_seconds": nullable(SECONDS),
    "heartbeat_interval_seconds": nullable(SECONDS),
}
GROUP_CREATE_BODY = obj(["name"], GROUP_FIELDS)
GROUP_UPDATE_BODY = {**obj([], GROUP_FIELDS), "minProperties": 1}

SCOPES = ["global", "group", "target"]
MODES = ["interval", "once"]
VERSION_OR_LATEST = {"type": "string", "maxLength": 32,
                     "pattern": r"^(latest|(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8}))$"}
DURATION = {"type": ["string", "integer"], "maxLength": 32, "minimum": 1,
            "maximum": SECONDS["maximum"],
            "description": "a duration such as 60s, 5m, 1h (YAML short form)"}
USER = {"type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$"}
SCHEDULE_IN = obj(["mode"], {
    "mode": {"enum": MODES},
    "interval_seconds": nullable(SECONDS),
    "interval": nullable(DURATION),
})
POLICY_FIELDS: dict[str, Any] = {
    "name": NAME,
    "script": NAME,
    "version": VERSION_OR_LATEST,
    "scope": {"enum": SCOPES},
    "group": nullable(NAME),
    "target": nullable(HOSTNAME),
    "params": {"type": "object", "maxProperties": 256},
    "schedule": SCHEDULE_IN,
    "timeout_seconds": nullable(SECONDS),
    "timeout": nullable(DURATION),
    "run_as": nullable(USER),
    "priority": {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000},
    "enabled": {"type": "boolean"},
}
ROLLOUT_IN = obj(["steps"], {
    "steps": {"type": "array", "minItems": 1, "maxItems": 20,
              "items": {"type": "integer", "minimum": 1, "maximum": 100},
              "description": "percentages of the policy's targets, ascending, ending at 100"},
    "wait": DURATION,
    "wait_seconds": SECONDS,
    "min_runs": {"type": "integer", "minimum": 1, "maximum": 1000},
    "max_failure_ratio": {"type": "number", "minimum": 0, "maximum": 1},
    "on_failure": {"enum": ["halt", "rollback"]},
})
POLICY_FIELDS["rollout"] = nullable(ROLLOUT_IN)
POLICY_CREATE_BODY = obj(["name", "script", "scope", "schedule"], POLICY_FIELDS)
POLICY_PATCH_BODY = {**obj([], POLICY_FIELDS), "minProperties": 1}
