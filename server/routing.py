"""Routes as data: one `Route` per endpoint, from which both the aiohttp router and
the OpenAPI document are built, so the two cannot drift apart.

A route names who may call it (`Access`), the JSON Schemas of its body, query and
path parameters, and its success responses. `bind()` wraps the handler so that by
the time it runs the caller is authenticated and authorised and every input is
validated: handlers receive a `Call` with plain, checked data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiohttp import web

from aami.server.appkeys import AUTHENTICATOR, CONFIG
from aami.server.errors import Forbidden, PayloadTooLarge, Unauthorized, ValidationFailed
from aami.server.principal import AdminPrincipal, AgentPrincipal, BootstrapPrincipal, Principal
from aami.server.tokens import Role
from aami.server.validation import check_schema


class AccessKind(Enum):
    PUBLIC = "public"  # no token
    ADMIN = "admin"  # admin API token with at least `role`
    AGENT = "agent"  # an agent token (acts only for its own target)
    BOOTSTRAP = "bootstrap"  # a bootstrap token (registration only)
    LEGACY = "legacy"  # the old cron runner: agent/admin token, or none if compat is on


@dataclass(frozen=True)
class Access:
    kind: AccessKind
    role: Role | None = None


PUBLIC = Access(AccessKind.PUBLIC)
AGENT = Access(AccessKind.AGENT)
BOOTSTRAP = Access(AccessKind.BOOTSTRAP)
LEGACY = Access(AccessKind.LEGACY)
VIEWER = Access(AccessKind.ADMIN, Role.VIEWER)
OPERATOR = Access(AccessKind.ADMIN, Role.OPERATOR)
ADMIN = Access(AccessKind.ADMIN, Role.ADMIN)


@dataclass
class Call:
    """One validated request, as handlers see it."""

    request: web.Request
    principal: Principal | None
    body: Any
    query: dict[str, Any]
    path: dict[str, Any]

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def admin(self) -> AdminPrincipal:
        assert isinstance(self.principal, AdminPrincipal)
        return self.principal

    @property
    def agent(self) -> AgentPrincipal:
        assert isinstance(self.principal, AgentPrincipal)
        return self.principal


CallHandler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: CallHandler
    summary: str
    access: Access
    tag: str
    body: Mapping[str, Any] | None = None
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # status -> JSON Schema of the body, or None for "no JSON body"
    responses: Mapping[int, Mapping[str, Any] | None] = field(default_factory=dict)
    # non-JSON success bodies, e.g. {"200": "application/octet-stream"}
    response_media: Mapping[int, str] = field(default_factory=dict)
    request_headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The web UI and other non-API routes stay out of the OpenAPI document.
    in_openapi: bool = True
    # NUL characters cannot be stored in PostgreSQL text. Operators' input with one
    # is refused (400); what agents report (script output, system facts) is kept
    # with each NUL replaced by U+FFFD, so one odd byte never blocks a node's spool.
    replace_nul: bool = False

    @property
    def path_names(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


def json_reply(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
               ) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":"), default=str).encode("utf-8"),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _without_nul(value: Any, where: str, *, replace: bool) -> Any:
    """Refuse (or replace) NUL characters anywhere in a decoded JSON value."""
    if isinstance(value, str):
        if "\x00" not in value:
            return value
        if replace:
            return value.replace("\x00", "\ufffd")
        raise ValidationFailed(f"{where}: must not contain NUL characters",
                               details={"field": where})
    if isinstance(value, dict):
        return {_without_nul(k, where, replace=replace): _without_nul(
                    v, f"{where}.{k}", replace=replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v, f"{where}[{i}]", replace=replace) for i, v in enumerate(value)]
    return value


def _convert_scalar(raw: str, schema: Mapping[str, Any], where: str) -> Any:
    _without_nul(raw, where, replace=False)
    kind = schema.get("type")
    try:
        if kind == "integer":
            if not re.fullmatch(r"-?\d{1,18}", raw):
                raise ValueError
            return int(raw)
        if kind == "boolean":
            if raw not in ("true", "false"):
                raise ValueError
            return raw == "true"
    except ValueError:
        raise ValidationFailed(f"{where}: expected {kind}, got {raw!r}",
                               details={"field": where}) from None
    return raw


def _parse_params(raw: Mapping[str, str], spec: Mapping[str, Mapping[str, Any]],
                  root: str, *, reject_unknown: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, text in raw.items():
        _without_nul(name, root, replace=False)
        if name not in spec:
            if reject_unknown:
                raise ValidationFailed(f"{root}.{name}: unknown parameter",
                                       details={"field": f"{root}.{name}"})
            continue
        values[name] = _convert_scalar(text, spec[name], f"{root}.{name}")
    for name, schema in spec.items():
        if name in values:
            check_schema(values[name], schema, f"{root}.{name}")
    return values


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether containers nest deeper than `max_depth` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep(max_depth: int) -> None:
    raise ValidationFailed(f"body: JSON nested deeper than {max_depth} levels",
                           details={"field": "body", "max_depth": max_depth})


async def _read_json(request: web.Request, route: Route) -> Any:
    if route.body is None:
        return None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("request body is too large",
                              details={"max_bytes": request.app._client_max_size}) from None
    if not raw:
        raise ValidationFailed("body: a JSON body is required", details={"field": "body"})
    max_depth = request.app[CONFIG].limits.max_json_depth
    try:
        body = json.loads(raw)
    except RecursionError:
        body = None  # deeper than the decoder goes: refused just below
        _too_deep(max_depth)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"body: malformed JSON ({exc})",
                               details={"field": "body"}) from None
    if _depth_exceeds(body, max_depth):
        # Every later step (NUL scan, schema checks, services) recurses; a body a few
        # thousand levels deep would end in RecursionError, a 500, for any token.
        _too_deep(max_depth)
    body = _without_nul(body, "body", replace=route.replace_nul)
    check_schema(body, route.body, "body")
    return body


async def _authorize(request: web.Request, access: Access) -> Principal | None:
    if access.kind is AccessKind.PUBLIC:
        return None
    principal = await request.app[AUTHENTICATOR].authenticate(request)
    if access.kind is AccessKind.LEGACY:
        if isinstance(principal, AdminPrincipal | AgentPrincipal):
            return principal
        if principal is None and request.app[AUTHENTICATOR].legacy_open:
            return None
        raise Unauthorized("an agent or admin token is required")
    if principal is None:
        raise Unauthorized("a bearer token is required")
    if access.kind is AccessKind.ADMIN:
        if not isinstance(principal, AdminPrincipal):
            raise Forbidden("this route needs an admin API token")
        assert access.role is not None
        if not principal.role.allows(access.role):
            raise Forbidden(f"this route needs the {access.role.value} role or higher",
                            details={"required_role": access.role.value})
    elif access.kind is AccessKind.AGENT and not isinstance(principal, AgentPrincipal):
        raise Forbidden("this route needs an agent token")
    elif access.kind is AccessKind.BOOTSTRAP and not isinstance(principal, BootstrapPrincipal):
        raise Forbidden("this route needs a bootstrap token")
    return principal


def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for `route`: authorise, validate, then call the handler."""

    async def handler(request: web.Request) -> web.StreamResponse:
        principal = await _authorize(request, route.access)
        path = _parse_params(request.match_info, route.path_params, "path",
                             reject_unknown=False)
        query = _parse_params(request.query, route.query, "query", reject_unknown=True)
        body = await _read_json(request, route)
        return await route.handler(Call(request, principal, body, query, path))

    handler.__name__ = route.handler.__name__
    return handler


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, bind(route))
