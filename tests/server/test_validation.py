"""The compiled fast validator never accepts what the reference validator refuses.

`server.validation` answers valid requests with fastjsonschema and lets jsonschema
(Draft 2020-12) judge everything else. That is only sound if the fast one is never
*looser*. These tests check it on every schema any route declares, with inputs
generated from the schema itself (valid ones, which must take the fast path) and
the same inputs with one part replaced by arbitrary JSON (which may or may not be
valid: whatever the fast validator accepts, jsonschema must accept too).

`valid_instances` covers exactly the keywords in `SAME_IN_BOTH_DRAFTS`; the
generated values are checked against jsonschema before use, so a gap in it shows
up as a failure, not as a weaker test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aami.server.app import all_routes
from aami.server.errors import ValidationFailed
from aami.server.validation import (
    SAME_IN_BOTH_DRAFTS,
    ReferenceValidator,
    check_schema,
    compile_fast,
    schema_check,
)


def _route_schemas() -> list[tuple[str, Mapping[str, Any]]]:
    seen: dict[int, tuple[str, Mapping[str, Any]]] = {}
    for route in all_routes():
        named = [("body", route.body)] if route.body is not None else []
        named += [(f"query.{k}", v) for k, v in route.query.items()]
        named += [(f"path.{k}", v) for k, v in route.path_params.items()]
        for where, schema in named:
            seen.setdefault(id(schema), (f"{route.method} {route.path} {where}", schema))
    return sorted(seen.values(), key=lambda pair: pair[0])


SCHEMAS = _route_schemas()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


ANNOTATIONS = {"format", "default", "description", "title", "examples", "contentEncoding"}


def valid_instances(schema: Any) -> st.SearchStrategy[Any]:
    """Values valid under `schema` (a route schema: the keywords it may use)."""
    if schema is True or schema == {}:
        return JSON
    assert set(schema) <= SAME_IN_BOTH_DRAFTS, set(schema) - SAME_IN_BOTH_DRAFTS
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([valid_instances(sub) for sub in schema["anyOf"]])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return st.one_of([valid_instances({**schema, "type": kind}) for kind in kinds])
    if kinds is None:
        return JSON
    strategy = _BY_TYPE[kinds](schema)
    if CONDITIONS & set(schema):
        # Conditional rules (scope vs group/target, either/or): draw by the plain
        # keywords, keep what the reference validator accepts.
        return strategy.filter(ReferenceValidator(schema).is_valid)
    return strategy


CONDITIONS = {"allOf", "not", "if", "then", "else"}


def _strings(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10**9)
    if "pattern" in schema:
        # `$` is the end of the string in JSON Schema; Python's `re` reads it more loosely.
        pattern = schema["pattern"].replace("$", r"\Z")
        return st.from_regex(pattern).filter(lambda v: low <= len(v) <= high)
    return st.text(min_size=low, max_size=max(low, min(high, 40)))


def _arrays(schema: Mapping[str, Any]) -> st.SearchStrategy[list[Any]]:
    low = schema.get("minItems", 0)
    items = st.lists(valid_instances(schema.get("items", True)), min_size=low,
                     max_size=max(low, min(schema.get("maxItems", 3), 3)),
                     unique_by=(lambda v: repr(v)) if schema.get("uniqueItems") else None)
    needed = schema.get("contains", {})
    if "const" in needed:  # e.g. rollout steps: one of them is 100
        return items.map(lambda v: v if needed["const"] in v else [*v[1:], needed["const"]]
                         if len(v) >= schema.get("maxItems", 3) else [*v, needed["const"]])
    return items


@st.composite
def _objects(draw: st.DrawFn, schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    value = {name: draw(valid_instances(properties[name]))
             for name in schema.get("required", [])}
    for name in sorted(set(properties) - set(value)):
        if draw(st.booleans()):
            value[name] = draw(valid_instances(properties[name]))
    extra = schema.get("additionalProperties", True)
    names = _strings(schema.get("propertyNames", {})).filter(lambda n: n not in properties)
    if extra is not False and len(value) < schema.get("maxProperties", 100):
        value.update(draw(st.dictionaries(names, valid_instances(extra), max_size=2)))
    while len(value) < schema.get("minProperties", 0):
        unused = sorted(set(properties) - set(value))
        if unused:
            name = draw(st.sampled_from(unused))
            value[name] = draw(valid_instances(properties[name]))
        else:
            value[draw(names)] = draw(valid_instances(extra))
    return value


_BY_TYPE = {
    "string": _strings,
    "integer": lambda s: st.integers(s.get("minimum"), s.get("maximum")),
    "number": lambda s: st.floats(s.get("minimum"), s.get("maximum"), allow_nan=False),
    "boolean": lambda s: st.booleans(),
    "null": lambda s: st.none(),
    "array": _arrays,
    "object": _objects,
}


def _mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """`value` with the part that `path` picks (by child index) replaced."""
    if not path or not isinstance(value, dict | list) or not value:
        return replacement
    step, rest = path[0], path[1:]
    if isinstance(value, list):
        i = step % len(value)
        return [*value[:i], _mutate(value[i], rest, replacement), *value[i + 1:]]
    key = sorted(value)[step % len(value)]
    return {**value, key: _mutate(value[key], rest, replacement)}


def _fast_accepts(fast: Any, instance: Any) -> bool:
    try:
        fast(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def test_every_route_schema_has_a_fast_validator() -> None:
    # Not needed for correctness, but a schema falling back to jsonschema alone
    # silently loses the speed-up: a new keyword belongs in SAME_IN_BOTH_DRAFTS
    # (after checking its meaning in both drafts) or the schema should avoid it.
    slow = [name for name, schema in SCHEMAS if compile_fast(schema) is None]
    assert not slow


def test_unknown_keywords_fall_back_to_jsonschema_alone() -> None:
    assert compile_fast({"type": "object", "unevaluatedProperties": False}) is None
    assert compile_fast({"type": "array", "prefixItems": [{"type": "string"}]}) is None


@pytest.mark.parametrize(("name", "schema"), SCHEMAS, ids=[n for n, _ in SCHEMAS])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_fast_validator_is_never_looser(name: str, schema: Mapping[str, Any],
                                        data: st.DataObject) -> None:
    fast = schema_check(schema).fast
    reference = ReferenceValidator(schema)
    valid = data.draw(valid_instances(schema), label="valid")
    assert reference.is_valid(valid)
    assert _fast_accepts(fast, valid), f"{name}: a valid input missed the fast path"
    path = data.draw(st.lists(st.integers(0, 50), max_size=4), label="path")
    changed = _mutate(valid, path, data.draw(JSON, label="replacement"))
    if _fast_accepts(fast, changed):
        assert reference.is_valid(changed), f"{name}: fast validator accepted {changed!r}"
    else:
        # Refused by the fast one: the reference decides and check_schema agrees with it.
        if reference.is_valid(changed):
            check_schema(changed, schema, "body")
        else:
            with pytest.raises(ValidationFailed):
                check_schema(changed, schema, "body")


def test_the_error_names_the_field_as_before() -> None:
    from aami.server.api.agent.schemas import HEARTBEAT_BODY

    with pytest.raises(ValidationFailed) as caught:
        check_schema({"agent_version": "1", "uptime_seconds": -1}, HEARTBEAT_BODY, "body")
    assert caught.value.details == {"field": "body.uptime_seconds"}
    with pytest.raises(ValidationFailed) as caught:
        check_schema({"agent_version": "1"}, HEARTBEAT_BODY, "body")
    assert caught.value.details == {"field": "body.uptime_seconds"}
    assert "is required" in caught.value.message


@pytest.mark.parametrize("value", ["web01\n", "web01\n\n", "\nweb01"])
def test_a_pattern_dollar_is_the_end_of_the_string(value: str) -> None:
    # Python's `$` also matches before a final newline; JSON Schema's does not.
    from aami.server.schemas import HOSTNAME

    with pytest.raises(ValidationFailed, match=r"body\.hostname"):
        check_schema(value, HOSTNAME, "body.hostname")
