r"""Request validation against a route's JSON Schema, with one-line errors.

Two validators per schema, built once:

* a *fast* one, compiled to Python by fastjsonschema, answers the common case (a
  valid request) in a few microseconds. Under agent load, jsonschema's interpreter
  held the server's GIL 13 % of the time (32 us for a heartbeat body, 132 us for a
  report of two executions; the compiled check takes 1.3 and 5.3 us);
* the *reference* one, jsonschema's Draft 2020-12 validator, decides whenever the
  fast one refuses, and names the bad field (`body.executions[0].id: ...`).

Both read `$` in a `pattern` as JSON Schema (ECMA-262) does: the end of the string.
Python's `re` also lets `$` match before a final newline, so with plain jsonschema
`"web01\n"` passed the hostname pattern; here `$` is read as `\Z`, as fastjsonschema
does too.

So the fast validator can only ever make a request cheaper, never change its fate,
provided it accepts nothing the reference refuses. It is built only for schemas
whose keywords mean the same in draft 7 (fastjsonschema's newest draft) and 2020-12,
with formats and defaults off as in the reference;
`tests/server/test_validation.py` checks the "accepts nothing more" property on
every route's schema with generated inputs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastjsonschema
import jsonschema
from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft07 import CodeGeneratorDraft07
from fastjsonschema.ref_resolver import RefResolver

from aami.server.errors import ValidationFailed

# Keywords whose draft-7 meaning (fastjsonschema) equals their 2020-12 meaning
# (jsonschema). A schema using any other keyword is checked by jsonschema alone.
SAME_IN_BOTH_DRAFTS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "anyOf", "oneOf", "allOf", "not", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "minProperties", "maxProperties", "propertyNames",
    "uniqueItems", "if", "then", "else", "contains",
    # annotations only, in both (formats and defaults are turned off below, and
    # fastjsonschema's base64 check is removed with the keyword)
    "format", "default", "description", "title", "examples", "contentEncoding",
})
# fastjsonschema asserts this one; in 2020-12 it is an annotation.
_ANNOTATIONS_FASTJSONSCHEMA_ASSERTS = frozenset({"contentEncoding"})
_SUBSCHEMA_MAPS = ("properties",)
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "propertyNames", "if", "then", "else",
               "contains")


def _without_asserted_annotations(schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return schema
    out = {k: v for k, v in schema.items() if k not in _ANNOTATIONS_FASTJSONSCHEMA_ASSERTS}
    for key in _SUBSCHEMA_MAPS:
        if key in out:
            out[key] = {n: _without_asserted_annotations(v) for n, v in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if key in out:
            out[key] = [_without_asserted_annotations(v) for v in out[key]]
    for key in _SUBSCHEMAS:
        if key in out:
            out[key] = _without_asserted_annotations(out[key])
    return out


def _keywords(schema: Any) -> set[str]:
    """Every keyword used in `schema` and its subschemas."""
    if not isinstance(schema, Mapping):
        return set()
    subschemas = [*(v for key in _SUBSCHEMA_MAPS for v in schema.get(key, {}).values()),
                  *(v for key in _SUBSCHEMA_LISTS for v in schema.get(key, [])),
                  *(schema.get(key) for key in _SUBSCHEMAS)]
    return set(schema).union(*(_keywords(sub) for sub in subschemas))


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_UNESCAPED_DOLLAR.sub(r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any
             ) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# jsonschema's Draft 2020-12 validator, with `pattern` anchored as the spec says and
# "integer" meaning a JSON number written without a fraction or exponent: since draft 6
# 131072.0 counts as an integer, and a service would store or compare a float where
# it expects an int (a policy id of 131072.0 matched nothing, silently).
ReferenceValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", _strict_integer))


class _StrictIntegerDraft07(CodeGeneratorDraft07):
    """fastjsonschema's draft 7 with draft 4's (strict) integer type check, to match
    the reference validator above."""

    generate_type = CodeGeneratorDraft04.generate_type


def _compile_draft07(definition: dict[str, Any]) -> Callable[[Any], Any]:
    # fastjsonschema.compile() with our generator class; its steps, in public names.
    resolver = RefResolver.from_schema(definition, handlers={}, store={})
    generator = _StrictIntegerDraft07(definition, resolver=resolver, formats={},
                                      use_default=False, use_formats=False)
    global_state = generator.global_state
    exec(generator.func_code, global_state)  # noqa: S102 (code generated from our schema)
    function: Callable[[Any], Any] = global_state[resolver.get_scope_name()]
    return function


def compile_fast(schema: Mapping[str, Any]) -> Callable[[Any], Any] | None:
    """The compiled validator for `schema`, or None when only jsonschema may judge it."""
    if not _keywords(schema) <= SAME_IN_BOTH_DRAFTS:
        return None
    definition = {**_without_asserted_annotations(schema),
                  "$schema": "http://json-schema.org/draft-07/schema#"}
    return _compile_draft07(definition)


class SchemaCheck:
    """Both validators of one schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.fast = compile_fast(schema)
        self.reference = ReferenceValidator(schema)

    def first_error(self, instance: Any) -> jsonschema.ValidationError | None:
        if self.fast is not None:
            try:
                self.fast(instance)
                return None
            except fastjsonschema.JsonSchemaException:
                pass  # the reference decides, and says where
        return jsonschema.exceptions.best_match(self.reference.iter_errors(instance))


# Route schemas are module-level constants: build each one's validators once.
_CHECKS: dict[int, SchemaCheck] = {}


def schema_check(schema: Mapping[str, Any]) -> SchemaCheck:
    check = _CHECKS.get(id(schema))
    if check is None or check.schema is not schema:
        check = _CHECKS[id(schema)] = SchemaCheck(schema)
    return check


def check_schema(instance: Any, schema: Mapping[str, Any], root: str) -> None:
    """Raise ValidationFailed naming the first bad field (`body.schedule.mode`)."""
    error = schema_check(schema).first_error(instance)
    if error is None:
        return
    where = _field_path(error, root)
    message = _short_message(error)
    raise ValidationFailed(f"{where}: {message}", details={"field": where})


def _field_path(error: jsonschema.ValidationError, root: str) -> str:
    path = root
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if error.validator == "required" and isinstance(error.message, str):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}.{missing}" if missing else path
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        return f"{path}.{extra[0]}" if extra else path
    if _at_most_one(error):
        return f"{path}.{error.validator_value['required'][-1]}"  # name the second
    return path


def _at_most_one(error: jsonschema.ValidationError) -> bool:
    """The error of schemas.at_most_one: `not` {object with both fields}."""
    return error.validator == "not" and isinstance(error.validator_value, Mapping) and \
        set(error.validator_value) == {"type", "required"}


def _short_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown field"
    if error.validator == "required":
        return "is required"
    if _at_most_one(error):
        return "give at most one of " + ", ".join(error.validator_value["required"])
    if error.validator == "not" and error.validator_value == {"type": "null"}:
        return "must not be null here"
    if error.validator == "type" and error.validator_value == "null":
        return "must be null or absent here"  # a conditional rule (scope, mode, either/or)
    if error.validator == "anyOf" and all("required" in sub for sub in error.validator_value):
        names = [name for sub in error.validator_value for name in sub["required"]]
        return f"needs one of {', '.join(names)}"
    if error.validator == "pattern" and isinstance(error.schema, Mapping) and \
            error.schema.get("description"):
        return f"{error.instance!r} is not {error.schema['description']}"
    message = error.message
    return message if len(message) <= 160 else message[:157] + "..."
