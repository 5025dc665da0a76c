"""The parameter-schema subset: what check_schema refuses and what validate_params says."""

from __future__ import annotations

import pytest

from aami import trust


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "object"},
        {"type": "object", "properties": {}, "additionalProperties": True},
        {
            "type": "object",
            "title": "t",
            "description": "d",
            "properties": {
                "n": {"type": "number", "minimum": 0.5, "maximum": 2},
                "i": {"type": ["integer", "null"], "default": None},
                "s": {"type": "string", "minLength": 1, "maxLength": 8, "pattern": "[a-z]+"},
                "e": {"enum": ["a", 1, None]},
                "b": {"type": "boolean", "default": False},
                "a": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                },
            },
            "required": ["n"],
        },
    ],
)
def test_supported_schemas(schema: dict) -> None:
    trust.check_schema(schema)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ([], "must be an object"),
        ({"type": "array"}, "top level"),
        ({"oneOf": []}, "params_schema.oneOf: keyword is not supported"),
        ({"properties": {"x": {"type": "string", "format": "email"}}}, "format: keyword is not"),
        ({"properties": {"x": {"type": "string", "minimum": 1}}}, "does not apply to type string"),
        ({"properties": {"x": {"type": "integer", "pattern": "1"}}}, "does not apply"),
        ({"properties": {"x": {"minLength": 1}}}, "needs a type or an enum"),
        ({"properties": {"x": {"type": "float"}}}, "'float' is not one of"),
        ({"properties": {"x": {"type": ["string", "string"]}}}, "twice"),
        ({"properties": {"x": {"type": "string", "pattern": "("}}}, "not a valid regular"),
        ({"properties": {"x": {"type": "integer", "minimum": "1"}}}, "must be a number"),
        ({"properties": {"x": {"type": "integer", "minimum": 5, "maximum": 1}}}, "greater"),
        ({"properties": {"x": {"type": "string", "maxLength": -1}}}, "non-negative"),
        ({"properties": {"x": {"type": "integer", "default": "a"}}}, "default does not validate"),
        ({"properties": {"x": {"enum": []}}}, "non-empty list"),
        ({"properties": {"x": {"type": "string"}}, "required": ["y"]}, "'y' is not declared"),
        ({"properties": {"x-y": {"type": "string"}}}, "not an identifier"),
        ({"additionalProperties": {"type": "string"}}, "true or false"),
        ({"properties": {"x": {"type": "string", "description": 3}}}, "description"),
    ],
)
def test_refused_schemas(schema: object, words: str) -> None:
    with pytest.raises(trust.MalformedStatement, match=words.replace("(", r"\(")):
        trust.check_schema(schema)  # type: ignore[arg-type]


def test_nesting_is_bounded() -> None:
    schema: dict = {"type": "string"}
    for _ in range(20):
        schema = {"type": "array", "items": schema}
    with pytest.raises(trust.MalformedStatement, match="deeper"):
        trust.check_schema({"properties": {"x": schema}})


@pytest.mark.parametrize("schema", [{}, {"type": "object"}])
def test_empty_schema_means_no_params(schema: dict) -> None:
    trust.validate_params(schema, {})
    with pytest.raises(trust.ParamsInvalid, match=r"params\.x: is not a declared parameter"):
        trust.validate_params(schema, {"x": 1})


SCHEMA = {
    "properties": {
        "n": {"type": "number", "minimum": 0.5, "maximum": 2},
        "i": {"type": ["integer", "null"]},
        "s": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "[a-z]+"},
        "e": {"enum": ["a", 1, None]},
        "b": {"type": "boolean"},
        "a": {
            "type": "array",
            "maxItems": 2,
            "items": {"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]},
        },
        "free": {"type": "object", "additionalProperties": True},
    },
}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"n": 1.5, "i": None, "s": "ab", "e": None, "b": True},
        {"i": 3.0},  # JSON Schema: an integer may be written 3.0
        {"e": 1.0},
        {"a": [{"k": "x"}], "free": {"anything": [1, 2]}},
    ],
)
def test_valid_params(params: dict) -> None:
    trust.validate_params(SCHEMA, params)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 3}, "params.n: 3 is greater than the maximum 2"),
        ({"n": 0.1}, "params.n: 0.1 is less than the minimum 0.5"),
        ({"n": float("nan")}, "params.n: nan is not of type number"),
        ({"n": True}, "params.n: true is not of type number"),
        ({"i": 1.5}, "params.i: 1.5 is not of type integer/null"),
        ({"s": "a"}, "params.s: is shorter than the minimum length 2"),
        ({"s": "abcde"}, "params.s: is longer than the maximum length 4"),
        ({"s": "ab1"}, "params.s: 'ab1' does not match the pattern '[a-z]+'"),
        ({"e": True}, "params.e: true is not one of 'a', 1, null"),
        ({"e": "b"}, "params.e: 'b' is not one of"),
        ({"b": 0}, "params.b: 0 is not of type boolean"),
        ({"a": [{"k": "x"}, {"k": "y"}, {"k": "z"}]}, "params.a: has more than 2 items"),
        ({"a": [{"k": "x"}, {}]}, "params.a[1].k: is required"),
        ({"a": [{"k": "x", "j": 1}]}, "params.a[0].j: is not a declared parameter"),
        ({"a": "x"}, "params.a: 'x' is not of type array"),
    ],
)
def test_invalid_params_name_the_path(params: dict, message: str) -> None:
    with pytest.raises(trust.ParamsInvalid) as info:
        trust.validate_params(SCHEMA, params)
    assert str(info.value) == message or str(info.value).startswith(message)
    assert info.value.path == message.split(":")[0]


def test_params_must_be_an_object() -> None:
    with pytest.raises(trust.ParamsInvalid, match="params: must be an object"):
        trust.validate_params({}, ["x"])  # type: ignore[arg-type]


def test_pattern_must_match_the_whole_string() -> None:
    schema = {"properties": {"host": {"type": "string", "pattern": "node-[0-9]+"}}}
    trust.validate_params(schema, {"host": "node-12"})
    with pytest.raises(trust.ParamsInvalid):
        trust.validate_params(schema, {"host": "node-12; reboot"})


def test_schema_defaults_are_copies() -> None:
    schema = {"properties": {"m": {"type": "array", "default": ["/"]}, "x": {"type": "string"}}}
    defaults = trust.schema_defaults(schema)
    assert defaults == {"m": ["/"]}
    defaults["m"].append("/data")
    assert schema["properties"]["m"]["default"] == ["/"]
