"""How UI routes are declared: `page(method, path, handler)` builds a `Route` kept out
of the OpenAPI document. Authentication, CSRF and role errors are handled by the UI
middleware (`middleware.py`), so a page handler takes the plain request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from server.routing import PUBLIC, Call, Route

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(method: str, path: str, handler: PageHandler) -> Route:
    async def call_handler(call: Call) -> web.StreamResponse:
        return await handler(call.request)

    call_handler.__name__ = handler.__name__
    return Route(method, path, call_handler, handler.__doc__ or handler.__name__, PUBLIC,
                 "web-ui", in_openapi=False)


def int_param(request: web.Request, name: str) -> int:
    """A positive integer from the path or the query; a bad one is a 404, like a
    missing row."""
    raw = request.match_info.get(name) or request.query.get(name, "")
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise web.HTTPNotFound(text=f"no such {name}: {raw!r}")
    return int(raw)


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)
