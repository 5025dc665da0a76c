"""A strict subset of JSON Schema for script parameters.

Why a subset: the agent validates parameters before every run and cannot afford the
memory of the `jsonschema` library; and a security check must not ignore what it does
not understand. `check_schema` therefore refuses every keyword outside this list, and
every keyword that does not apply to the declared type (`minimum` on a string), so no
constraint a script author wrote is ever silently dropped.

Supported keywords:
    type                 "object" "string" "integer" "number" "boolean" "array" "null",
                         or a list of them
    properties, required, additionalProperties (bool)          -- with type object
    minimum, maximum     (inclusive)                            -- with integer / number
    minLength, maxLength, pattern                               -- with string
    items (one schema), minItems, maxItems                      -- with array
    enum, default, description, title                           -- with any type

Deliberate differences from JSON Schema, each the safer reading:
  * `additionalProperties` defaults to **false**: a parameter the author did not
    declare is refused (a compromised server cannot invent `AAMI_PARAM_*` inputs).
    Write `"additionalProperties": true` to allow free-form keys.
  * `pattern` must match the **whole** string (Python `re.fullmatch`), not a substring.
  * Every schema needs `type` or `enum`: an unconstrained value must be asked for.
  * The top level is an object schema (`{}` or `{"type": "object", ...}`); `{}` and
    `{"type": "object"}` both mean "this script takes no parameters".
  * Top-level property names are identifiers (`[A-Za-z_][A-Za-z0-9_]*`) because each
    scalar parameter also reaches the script as the variable `AAMI_PARAM_<NAME>`.
  * `required` names must be declared in `properties`; a `default` must itself be valid.
  * Integers are ints (or floats with no fraction, as JSON Schema says); booleans are
    never numbers; NaN and infinities are never numbers.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aami.trust.errors import MalformedStatement, ParamsInvalid

__all__ = ["check_schema", "schema_defaults", "validate_params"]

TYPES = ("object", "string", "integer", "number", "boolean", "array", "null")
_ANY_TYPE = {"type", "enum", "default", "description", "title"}
_BY_TYPE: dict[str, set[str]] = {
    "object": {"properties", "required", "additionalProperties"},
    "string": {"minLength", "maxLength", "pattern"},
    "integer": {"minimum", "maximum"},
    "number": {"minimum", "maximum"},
    "array": {"items", "minItems", "maxItems"},
    "boolean": set(),
    "null": set(),
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_DEPTH = 16
MAX_PATTERN_LENGTH = 1000


# --------------------------------------------------------------------------- checking


def check_schema(schema: Mapping[str, Any]) -> None:
    """Refuse (MalformedStatement) a schema that uses anything outside the subset."""
    if not isinstance(schema, Mapping):
        raise MalformedStatement(f"params_schema: must be an object, got {_kind(schema)}")
    if "type" in schema and schema["type"] != "object":
        raise MalformedStatement('params_schema.type: the top level must be "object"')
    top = dict(schema)
    top.setdefault("type", "object")
    _check(top, "params_schema", 0)
    for name in top.get("properties", {}):
        if not _IDENTIFIER.fullmatch(name):
            raise MalformedStatement(
                f"params_schema.properties: {name!r} is not an identifier "
                "(letters, digits, underscore; it becomes AAMI_PARAM_<NAME>)"
            )


def _check(schema: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedStatement(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(schema, Mapping):
        raise MalformedStatement(f"{path}: a schema must be an object, got {_kind(schema)}")
    types = _declared_types(schema, path)
    if not types and "enum" not in schema:
        raise MalformedStatement(f"{path}: needs a type or an enum")
    allowed = set(_ANY_TYPE).union(*(_BY_TYPE[t] for t in types or ()))
    for keyword in schema:
        if keyword not in allowed:
            # Nothing silently ignored: an unknown or inapplicable keyword is an error.
            known = keyword in _ANY_TYPE or any(keyword in kws for kws in _BY_TYPE.values())
            declared = "/".join(types) or "(none declared)"
            why = f"does not apply to type {declared}" if known else "is not supported"
            raise MalformedStatement(f"{path}.{keyword}: keyword {why}")
    _check_annotations(schema, path)
    _check_numbers(schema, path)
    _check_string(schema, path)
    _check_array(schema, path, depth)
    _check_object(schema, path, depth)
    if "enum" in schema:
        enum = schema["enum"]
        if not isinstance(enum, list) or not enum:
            raise MalformedStatement(f"{path}.enum: must be a non-empty list")
    if "default" in schema:
        try:
            _validate(schema, schema["default"], f"{path}.default")
        except ParamsInvalid as exc:
            raise MalformedStatement(f"default does not validate: {exc}") from None


def _declared_types(schema: Mapping[str, Any], path: str) -> tuple[str, ...]:
    if "type" not in schema:
        return ()
    raw = schema["type"]
    types = [raw] if isinstance(raw, str) else raw
    if not isinstance(types, list) or not types:
        raise MalformedStatement(f"{path}.type: must be a type name or a list of them")
    for name in types:
        if name not in TYPES:
            raise MalformedStatement(f"{path}.type: {name!r} is not one of {', '.join(TYPES)}")
    if len(set(types)) != len(types):
        raise MalformedStatement(f"{path}.type: lists a type twice")
    return tuple(types)


def _check_annotations(schema: Mapping[str, Any], path: str) -> None:
    for keyword in ("description", "title"):
        if keyword in schema and not isinstance(schema[keyword], str):
            raise MalformedStatement(f"{path}.{keyword}: must be a string")


def _check_numbers(schema: Mapping[str, Any], path: str) -> None:
    for keyword in ("minimum", "maximum"):
        if keyword in schema and not _is_number(schema[keyword]):
            raise MalformedStatement(f"{path}.{keyword}: must be a number")
    if "minimum" in schema and "maximum" in schema and schema["minimum"] > schema["maximum"]:
        raise MalformedStatement(f"{path}: minimum is greater than maximum")


def _check_counts(schema: Mapping[str, Any], path: str, low: str, high: str) -> None:
    for keyword in (low, high):
        if keyword in schema:
            value = schema[keyword]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MalformedStatement(f"{path}.{keyword}: must be a non-negative integer")
    if low in schema and high in schema and schema[low] > schema[high]:
        raise MalformedStatement(f"{path}: {low} is greater than {high}")


def _check_string(schema: Mapping[str, Any], path: str) -> None:
    _check_counts(schema, path, "minLength", "maxLength")
    if "pattern" in schema:
        pattern = schema["pattern"]
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
            raise MalformedStatement(
                f"{path}.pattern: must be a string of at most {MAX_PATTERN_LENGTH} characters"
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise MalformedStatement(
                f"{path}.pattern: not a valid regular expression: {exc}"
            ) from None


def _check_array(schema: Mapping[str, Any], path: str, depth: int) -> None:
    _check_counts(schema, path, "minItems", "maxItems")
    if "items" in schema:
        _check(schema["items"], f"{path}.items", depth + 1)


def _check_object(schema: Mapping[str, Any], path: str, depth: int) -> None:
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise MalformedStatement(f"{path}.properties: must be an object")
    for name, sub in properties.items():
        _check(sub, f"{path}.properties.{name}", depth + 1)
    if "additionalProperties" in schema and not isinstance(schema["additionalProperties"], bool):
        raise MalformedStatement(f"{path}.additionalProperties: must be true or false")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise MalformedStatement(f"{path}.required: must be a list of property names")
    if len(set(required)) != len(required):
        raise MalformedStatement(f"{path}.required: names a property twice")
    for name in required:
        if name not in properties:
            raise MalformedStatement(f"{path}.required: {name!r} is not declared in properties")


# ------------------------------------------------------------------------- validating


def validate_params(schema: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Raise ParamsInvalid (naming the path, e.g. `params.mounts[1]`) unless valid."""
    check_schema(schema)
    if not isinstance(params, Mapping):
        raise ParamsInvalid(f"params: must be an object, got {_kind(params)}", path="params")
    top = dict(schema)
    top.setdefault("type", "object")
    _validate(top, params, "params")


def schema_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level `default` of each property: the script's default parameters."""
    properties = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
    return {
        name: copy.deepcopy(sub["default"])
        for name, sub in properties.items()
        if isinstance(sub, Mapping) and "default" in sub
    }


def _validate(schema: Mapping[str, Any], value: object, path: str) -> None:
    types = _declared_types(schema, path)
    if types and not any(_has_type(value, t) for t in types):
        raise ParamsInvalid(f"{path}: {_show(value)} is not of type {'/'.join(types)}", path=path)
    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        options = ", ".join(_show(o) for o in schema["enum"])
        raise ParamsInvalid(f"{path}: {_show(value)} is not one of {options}", path=path)
    if isinstance(value, int | float) and _is_number(value):
        _validate_number(schema, value, path)
    elif isinstance(value, str):
        _validate_string(schema, value, path)
    elif isinstance(value, list | tuple):
        _validate_array(schema, value, path)
    elif isinstance(value, Mapping):
        _validate_object(schema, value, path)


def _validate_number(schema: Mapping[str, Any], value: float, path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise ParamsInvalid(
            f"{path}: {_show(value)} is less than the minimum {_show(schema['minimum'])}",
            path=path,
        )
    if "maximum" in schema and value > schema["maximum"]:
        raise ParamsInvalid(
            f"{path}: {_show(value)} is greater than the maximum {_show(schema['maximum'])}",
            path=path,
        )


def _validate_string(schema: Mapping[str, Any], value: str, path: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise ParamsInvalid(
            f"{path}: is shorter than the minimum length {schema['minLength']}", path=path
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ParamsInvalid(
            f"{path}: is longer than the maximum length {schema['maxLength']}", path=path
        )
    if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        raise ParamsInvalid(
            f"{path}: {_show(value)} does not match the pattern {schema['pattern']!r}", path=path
        )


def _validate_array(schema: Mapping[str, Any], value: Sequence[Any], path: str) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise ParamsInvalid(f"{path}: has fewer than {schema['minItems']} items", path=path)
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise ParamsInvalid(f"{path}: has more than {schema['maxItems']} items", path=path)
    if "items" in schema:
        for index, item in enumerate(value):
            _validate(schema["items"], item, f"{path}[{index}]")


def _validate_object(schema: Mapping[str, Any], value: Mapping[Any, Any], path: str) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            raise ParamsInvalid(f"{path}.{name}: is required", path=f"{path}.{name}")
    for name in sorted(value, key=str):
        sub_path = f"{path}.{name}"
        if not isinstance(name, str):
            raise ParamsInvalid(f"{sub_path}: parameter names must be strings", path=sub_path)
        if name in properties:
            _validate(properties[name], value[name], sub_path)
        elif not schema.get("additionalProperties", False):
            # Undeclared inputs are refused: a compromised server cannot add parameters.
            raise ParamsInvalid(f"{sub_path}: is not a declared parameter", path=sub_path)


# -------------------------------------------------------------------------- helpers


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int)


def _has_type(value: object, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and float(value).is_integer()  # type: ignore[arg-type]
    checks: dict[str, Any] = {
        "number": _is_number,
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list | tuple),
        "object": lambda v: isinstance(v, Mapping),
    }
    return bool(checks[name](value))


def _json_equal(a: object, b: object) -> bool:
    """JSON equality: True is not 1, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else _json_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: object) -> str:
    return type(value).__name__
