"""How UI routes are declared: `page(method, path, handler)` builds a `Route` kept out
of the OpenAPI document. Authentication, CSRF and role errors are handled by the UI
middleware (`middleware.py`), so a page handler takes the plain request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from aami.server.routing import PUBLIC, Call, Route

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


QUERY_TEXT = {"type": "string", "maxLength": 2048}


def page(method: str, path: str, handler: PageHandler, query: tuple[str, ...] = ()) -> Route:
    """A UI route; `query` names the query parameters the page reads (the router
    refuses any other, as it does for the API). Values arrive as text and the page
    parses them itself, so a bad value is shown next to its field, not as a 400."""
    async def call_handler(call: Call) -> web.StreamResponse:
        return await handler(call.request)

    call_handler.__name__ = handler.__name__
    return Route(method, path, call_handler, handler.__doc__ or handler.__name__, PUBLIC,
                 "web-ui", query={name: QUERY_TEXT for name in query}, in_openapi=False)


def int_param(request: web.Request, name: str) -> int:
    """A positive integer from the path or the query; a bad one is a 404, like a
    missing row."""
    raw = request.match_info.get(name) or request.query.get(name, "")
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise web.HTTPNotFound(text=f"no such {name}: {raw!r}")
    return int(raw)


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)
