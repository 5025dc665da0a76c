"""The OpenAPI 3.1 document, built from the same `Route` list as the router."""

from __future__ import annotations

from typing import Any

from aami.server.routing import AccessKind, Route
from aami.server.schemas import ERROR

_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
                304: "Not modified"}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": f"{route.method.lower()}_{route.path.strip('/').replace('/', '_')}"
        .replace("{", "").replace("}", ""),
        "responses": {"default": {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }},
    }
    params: list[dict[str, Any]] = []
    for name, schema in route.path_params.items():
        params.append({"name": name, "in": "path", "required": True, "schema": dict(schema)})
    for name, schema in route.query.items():
        params.append({"name": name, "in": "query", "required": False, "schema": dict(schema)})
    for name, schema in route.request_headers.items():
        params.append({"name": name, "in": "header", "required": False, "schema": dict(schema)})
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(route.body)}},
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
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
