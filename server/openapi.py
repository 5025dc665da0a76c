"""The OpenAPI 3.1 document, built from the same `Route` list as the router.

Besides each route's own schemas, the document states what the router enforces for
every route (so a client, or a fuzzer, can rely on it):

- the error statuses a route can answer, from its shape (`_errors`): 400 for input
  that breaks the document (and a cursor this server did not issue; in text/plain
  when aiohttp's parser cannot read the request at all), 401/403 and 429
  (a back-off after bad tokens, with `Retry-After`) for routes that need a token, 404
  for objects named in the path, 413 for bodies over the limit, 503 when the
  database is unreachable; plus each route's domain refusals (`DOMAIN_ERRORS`: 409
  for a clash with stored state, 422 for a well-formed request refused by a rule no
  schema can state: a signature, a reference that must exist, the calendar);
- NUL characters are refused in operators' input (routing.py): every string gets a
  pattern without NUL, and free-form objects (policy `params`) say so of every value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aami.server.routing import AccessKind, Route
from aami.server.schemas import ERROR

_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
                304: "Not modified"}
_NO_NUL = "^[^\u0000]*$"
# Any JSON value without a NUL in a string or a key (free-form objects of operators).
JSON_WITHOUT_NUL = {
    "anyOf": [
        {"type": "string", "pattern": _NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonWithoutNul"}},
        {"type": "object", "propertyNames": {"pattern": _NO_NUL},
         "additionalProperties": {"$ref": "#/components/schemas/JsonWithoutNul"}},
    ],
}
_MISSING = "a referenced object (named in the body) does not exist"
# Refusals of well-formed requests, by route: what the services raise beyond the schema.
DOMAIN_ERRORS: dict[str, dict[int, str]] = {
    "POST /api/v1/scripts": {
        409: "the version is not above the stored versions of this script",
        413: "the script content or statement is over the trust limits",
        422: "the signed document is refused: signature, key, hash, statement or expiry"},
    "POST /api/v1/publisher-keys": {
        409: "a key of this name, or this key, is already registered",
        422: "public_key is not an Ed25519 public key in PEM form"},
    "POST /api/v1/groups": {409: "a group of this name exists"},
    "PATCH /api/v1/groups/{id}": {409: "a group of this name exists"},
    "POST /api/v1/targets": {409: "a target of this hostname exists", 422: _MISSING},
    "PATCH /api/v1/targets/{id}": {422: _MISSING},
    "POST /api/v1/policies": {
        409: "a policy of this name exists",
        422: f"{_MISSING}, or params do not satisfy the script's signed schema"},
    "PUT /api/v1/policies/{id}": {
        409: "a policy of this name exists",
        422: f"{_MISSING}, or params do not satisfy the script's signed schema"},
    "PATCH /api/v1/policies/{id}": {
        409: "a policy of this name exists",
        422: f"{_MISSING}, params do not satisfy the script's signed schema, or the "
             "change leaves the stored policy invalid (a group on a global policy)"},
    "POST /api/v1/agent/register": {
        403: "not a bootstrap token, or one scoped to another hostname",
        409: "the hostname has an agent, or was created in advance, and the token may "
             "not claim it (docs/security.md)"},
    "POST /api/v1/bootstrap-tokens": {
        422: f"{_MISSING} (group), or expires_at is not a calendar date or is past"},
    "POST /api/v1/targets/{id}/force-run": {
        422: f"{_MISSING} (policy), the policy is disabled or not assigned here"},
    "POST /api/v1/groups/{id}/force-run": {
        422: f"{_MISSING} (policy), or the policy is disabled"},
    "POST /api/v1/force-runs/{id}/cancel": {409: "the force-run is no longer open"},
}


def _errors(route: Route) -> dict[int, str]:
    """Every error status the router and the route's services can answer."""
    errors: dict[int, str] = {}
    if route.body is not None or route.query or route.path_params:
        errors[400] = "a value breaks a rule of this document" + (
            ", or the cursor is not one this server issued" if "cursor" in route.query
            else "")
    if route.access.kind is not AccessKind.PUBLIC:
        errors[401] = "no token, a malformed Authorization header, or an unknown, " \
                      "revoked or expired token"
        errors[403] = "the token's kind or role is not enough for this route"
        errors[429] = "too many bad tokens from this address: wait Retry-After seconds"
        errors[503] = "the database is not reachable"
    if route.path_params or route.access.kind is AccessKind.LEGACY:
        errors[404] = "no object of this id or name"
    if route.body is not None:
        errors[413] = "the body is over limits.max_body_bytes"
    errors.update(DOMAIN_ERRORS.get(f"{route.method} {route.path}", {}))
    return dict(sorted(errors.items()))


def without_nul(schema: Any) -> Any:
    """`schema` with NUL refused in every string and every free-form value."""
    if not isinstance(schema, Mapping):
        return schema
    out = {key: _without_nul_in(key, value) for key, value in schema.items()}
    kinds = out.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if "string" in kinds and "pattern" not in out and "enum" not in out and \
            "const" not in out:
        out["pattern"] = _NO_NUL
    if "object" in kinds and out.get("additionalProperties") is not False:
        out.setdefault("propertyNames", {"pattern": _NO_NUL})  # free keys: no NUL either
        if "properties" not in out and "additionalProperties" not in out:
            out["additionalProperties"] = {"$ref": "#/components/schemas/JsonWithoutNul"}
    return out


def _without_nul_in(key: str, value: Any) -> Any:
    if key in ("properties", "$defs") and isinstance(value, Mapping):
        return {name: without_nul(sub) for name, sub in value.items()}
    if key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
        return [without_nul(sub) for sub in value]
    if key in ("items", "additionalProperties", "then", "else", "not"):
        return without_nul(value)
    if key == "propertyNames" and isinstance(value, Mapping) and \
            not {"pattern", "enum", "const"} & set(value):
        return {**value, "pattern": _NO_NUL}  # names are strings, with or without "type"
    return value


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": f"{route.method.lower()}_{route.path.strip('/').replace('/', '_')}"
        .replace("{", "").replace("}", ""),
        "responses": {"default": {
            "description": "Error (an unexpected one: 500)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }},
    }
    for status, reason in _errors(route).items():
        op["responses"][str(status)] = _error_response(reason, retry_after=status == 429)
    if "400" in op["responses"]:
        # aiohttp's HTTP parser answers a request it cannot read (a request line or a
        # header over 8 KiB) itself, in plain text, before any route or middleware.
        bad = op["responses"]["400"]
        bad["description"] += ("; a request line or header over 8 KiB is refused by the "
                               "HTTP parser before any route, in text/plain")
        bad["content"]["text/plain"] = {"schema": {"type": "string"}}
    params: list[dict[str, Any]] = []
    strict = not route.replace_nul
    for name, schema in route.path_params.items():
        params.append({"name": name, "in": "path", "required": True,
                       "schema": without_nul(schema) if strict else dict(schema)})
    for name, schema in route.query.items():
        params.append({"name": name, "in": "query", "required": False,
                       "schema": without_nul(schema) if strict else dict(schema)})
    for name, schema in route.request_headers.items():
        params.append({"name": name, "in": "header", "required": False, "schema": dict(schema)})
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {
                "schema": without_nul(route.body) if strict else dict(route.body)}},
        }
    for status, reply in route.responses.items():
        entry: dict[str, Any] = {"description": _STATUS_TEXT.get(status, str(status))}
        media = route.response_media.get(status)
        if media:
            entry["content"] = {media: {"schema": {"type": "string"}}}
        elif reply is not None:
            entry["content"] = {"application/json": {"schema": dict(reply)}}
        op["responses"][str(status)] = entry
    if route.access.kind is not AccessKind.PUBLIC:
        op["security"] = [{"bearer": []}]
        if route.access.kind is AccessKind.LEGACY:
            op["security"].append({})
    if route.access.role is not None:
        op["x-aami-role"] = route.access.role.value
    return op


def _error_response(reason: str, *, retry_after: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": reason,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        entry["headers"] = {"Retry-After": {
            "description": "seconds to wait", "required": True,
            "schema": {"type": "integer", "minimum": 1}}}
    return entry


def build_document(routes: list[Route], *, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.in_openapi:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "AAMI config server", "version": version,
                 "description": "Admin API (roles viewer < operator < admin) and Agent API."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "JsonWithoutNul": JSON_WITHOUT_NUL},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
