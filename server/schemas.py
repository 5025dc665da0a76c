"""JSON Schema fragments shared by routes (and so by the OpenAPI document), and the
request bodies that both the API and the web UI check (groups, policies)."""

from __future__ import annotations

import re
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


def is_hostname(value: str) -> bool:
    """What HOSTNAME accepts, for input that does not come as a JSON body (CLI flags,
    web UI forms)."""
    return len(value) <= HOSTNAME["maxLength"] and re.fullmatch(
        HOSTNAME["pattern"], value) is not None


TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
# An RFC 3339 time as a request field: the shape is checked here; a date the calendar
# does not have (02-30) is refused by the service with 422.
RFC3339_PATTERN = (r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
                   r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
                   r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
TIME_IN: Schema = {"type": "string", "format": "date-time", "maxLength": 64,
                   "pattern": RFC3339_PATTERN,
                   "description": "an RFC 3339 time such as 2030-01-01T00:00:00Z"}
NULLABLE_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time"}
_PART = r"(0|[1-9]\d{0,8})"
VERSION: Schema = {"type": "string", "pattern": rf"^{_PART}\.{_PART}\.{_PART}$"}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SECONDS: Schema = {"type": "integer", "minimum": 1, "maximum": 31_536_000}
# Base64 with padding, standard or URL-safe alphabet (not mixed): what DSSE readers
# must accept and trust/envelope.py decodes.
BASE64: Schema = {"type": "string", "contentEncoding": "base64", "pattern": (
    r"^(([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
    r"|([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?)$")}
# A DSSE envelope (trust/envelope.py): `keyid` is optional, as in DSSE.
DSSE_ENVELOPE: Schema = {
    "type": "object", "required": ["payloadType", "payload", "signatures"],
    "additionalProperties": False,
    "properties": {
        "payloadType": {"type": "string", "minLength": 1},
        "payload": BASE64,
        "signatures": {"type": "array", "items": {
            "type": "object", "required": ["sig"], "additionalProperties": False,
            "properties": {"keyid": {"type": "string", "maxLength": 256}, "sig": BASE64}}},
    },
}


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
# Whole seconds in 1..365 days, written as seconds or with one unit: exactly what the
# services' duration parsing then accepts, so the document promises nothing it refuses.
DURATION_PATTERN = (r"^([1-9][0-9]{0,6}s?|[1-9][0-9]{0,4}m|[1-9][0-9]{0,2}h"
                    r"|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-5])d)$")
DURATION = {"type": ["string", "integer"], "maxLength": 32, "minimum": 1,
            "maximum": SECONDS["maximum"], "pattern": DURATION_PATTERN,
            "description": "a duration such as 60s, 5m, 1h, 2d (YAML short form), or "
                           "seconds as an integer"}
USER = {"type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$"}


def _given(field: str) -> Schema:
    """`field` is present and not null (for `if` clauses)."""
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


def _null(*fields: str) -> Schema:
    return {"properties": {f: {"type": "null"} for f in fields}}


def at_most_one(first: str, second: str) -> Schema:
    """Not both fields present (whatever their values). "object" keeps the rule from
    refusing a null in place of the object (`required` holds for any non-object)."""
    return {"not": {"type": "object", "required": [first, second]}}


def either(canonical: str, short: str) -> Schema:
    """At most one of two spellings of a value (`timeout_seconds` or `timeout`)."""
    return {"if": _given(canonical), "then": _null(short)}


SCHEDULE_IN = {**obj(["mode"], {
    "mode": {"enum": MODES},
    "interval_seconds": nullable(SECONDS),
    "interval": nullable(DURATION),
}), "allOf": [
    either("interval_seconds", "interval"),
    {"if": {"properties": {"mode": {"const": "interval"}}},
     "then": {"anyOf": [_given("interval_seconds"), _given("interval")]},
     "else": _null("interval_seconds", "interval")},
]}
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
ROLLOUT_IN = {**obj(["steps"], {
    # "Ascending" is beyond JSON Schema; distinct, within 1..100 and containing 100 is
    # not (with ascending, that is "ending at 100").
    "steps": {"type": "array", "minItems": 1, "maxItems": 20, "uniqueItems": True,
              "contains": {"const": 100},
              "items": {"type": "integer", "minimum": 1, "maximum": 100},
              "description": "percentages of the policy's targets, ascending, ending at 100"},
    "wait": DURATION,
    "wait_seconds": SECONDS,
    "min_runs": {"type": "integer", "minimum": 1, "maximum": 1000},
    "max_failure_ratio": {"type": "number", "minimum": 0, "maximum": 1},
    "on_failure": {"enum": ["halt", "rollback"]},
}), **at_most_one("wait_seconds", "wait")}
POLICY_FIELDS["rollout"] = nullable(ROLLOUT_IN)


def _scope_is(scope: str) -> Schema:
    return {"required": ["scope"], "properties": {"scope": {"const": scope}}}


# The scope names what a policy applies to: `group` needs a group, `target` a target,
# and neither may carry the other's reference (nor `global` either). In a PATCH the
# rules apply when the scope changes; a reference alone is judged against the stored
# scope (422, server/services/policies.py).
SCOPE_RULES: list[Schema] = [
    {"if": _scope_is("group"), "then": {"allOf": [_given("group"), _null("target")]}},
    {"if": _scope_is("target"), "then": {"allOf": [_given("target"), _null("group")]}},
    {"if": _scope_is("global"), "then": _null("group", "target")},
    either("timeout_seconds", "timeout"),
]
POLICY_CREATE_BODY = {**obj(["name", "script", "scope", "schedule"], POLICY_FIELDS),
                      "allOf": SCOPE_RULES}
POLICY_PATCH_BODY = {**obj([], POLICY_FIELDS), "minProperties": 1, "allOf": SCOPE_RULES}
