"""The served OpenAPI document and the application's router agree, both ways, and the
document is valid OpenAPI 3.1."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from aami.server.app import all_routes, create_app
from aami.server.config import ServerConfig
from tests.harness import ServerProcess

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document(shared_server: ServerProcess) -> dict[str, Any]:
    reply = shared_server.api("GET", "/api/openapi.json", role=None)
    assert reply.status == 200
    return reply.json  # type: ignore[no-any-return]


def _served() -> set[tuple[str, str]]:
    app = create_app(ServerConfig())
    served = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        served.add((route.method.lower(), route.resource.canonical))  # type: ignore[union-attr]
    return served


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items()
            for method in item if method in METHODS}


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    jsonschema.validate(document, OPENAPI_31)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for item in document["paths"].values():
        for op in item.values():
            jsonschema.Draft202012Validator.check_schema(
                op.get("requestBody", {}).get("content", {}).get("application/json", {})
                .get("schema", {}))
            for response in op["responses"].values():
                for media in response.get("content", {}).values():
                    jsonschema.Draft202012Validator.check_schema(media["schema"])


def test_openapi_spec_validator_accepts_the_document(document: dict[str, Any]) -> None:
    """A second opinion from a validator nobody here wrote (it also resolves every
    $ref and checks path parameters against the path templates)."""
    from openapi_spec_validator import OpenAPIV31SpecValidator

    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def test_every_served_api_route_is_documented(document: dict[str, Any]) -> None:
    hidden = {(r.method.lower(), r.path) for r in all_routes() if not r.in_openapi}
    undocumented = _served() - _documented(document) - hidden
    assert undocumented == set()
    for _method, path in hidden:
        assert not path.startswith("/api/"), f"{path}: an API route must be documented"


def test_every_documented_route_is_served(document: dict[str, Any]) -> None:
    assert _documented(document) - _served() == set()


def test_path_parameters_match(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, f"{method.upper()} {path}"


def test_documented_routes_answer_on_the_live_server(shared_server: ServerProcess,
                                                     document: dict[str, Any]) -> None:
    """Each documented operation reaches a handler in the running process (no 404 from
    the router, no 405): without a token it is refused with 401, or answered."""
    for path, item in document["paths"].items():
        concrete = re.sub(r"{\w+}", "1", path)
        for method, op in item.items():
            reply = shared_server.api(method.upper(), concrete, role=None)
            assert reply.status != 405, f"{method} {path}"
            if op.get("security") and {} not in op["security"]:
                assert reply.status == 401, f"{method} {path}: {reply.status}"
