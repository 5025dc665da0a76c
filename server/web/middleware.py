"""The web UI's one middleware: session, CSRF, role errors and security headers.

For every path under `/ui` (static files aside):
- the session cookie is resolved against the database (`ui_sessions.resolve`); with no
  valid session a GET is redirected to the login page and anything else refused;
- every POST must carry the session's CSRF token in its form (`csrf_token`), compared
  in constant time; the login form, which has no session yet, uses a double-submit
  cookie instead (see `views/auth.py`);
- domain errors (`ApiError`) raised by views become HTML error pages with the same
  status the API would answer, so a forged POST by a viewer gets a 403 either way;
- responses carry a strict Content-Security-Policy (no inline script, nothing from
  other origins) and are not cached.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.db import DatabaseUnavailable
from aami.server.errors import ApiError, Forbidden
from aami.server.http_errors import status_of
from aami.server.services import ui_sessions
from aami.server.services.ui_sessions import UiUser
from aami.server.tokens import Role
from aami.server.web import sessions
from aami.server.web.render import USER_KEY, render

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = ("/ui/login", "/ui/static/")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


def current_user(request: web.Request) -> UiUser:
    user = request.get(USER_KEY)
    assert isinstance(user, UiUser), "route not behind the session middleware"
    return user


def require_role(request: web.Request, needed: Role) -> UiUser:
    """The same rule as the API's `Access`: refuse unless the role is high enough."""
    user = current_user(request)
    if not user.can(needed):
        raise Forbidden(f"this action needs the {needed.value} role or higher",
                        details={"required_role": needed.value})
    return user


def _is_public(path: str) -> bool:
    return path == "/ui/login" or path.startswith("/ui/static/")


async def _authenticate(request: web.Request) -> web.StreamResponse | None:
    """Set request[USER_KEY], or return the response that refuses the request."""
    cookie = request.cookies.get(sessions.COOKIE, "")
    user = await request.app[DATABASE].run(ui_sessions.resolve, cookie) if cookie else None
    if user is None:
        if request.method in ("GET", "HEAD"):
            target = request.path_qs
            raise web.HTTPSeeOther(f"/ui/login?next={quote(target, safe='')}")
        return render(request, "error.html", {
            "title": "Not logged in", "message": "Your session has ended; log in again."},
            status=401)
    request[USER_KEY] = user
    if request.method == "POST":
        form = await request.post()
        given = form.get("csrf_token")
        if not sessions.csrf_matches(user.csrf_token, given if isinstance(given, str) else None):
            log.warning("refused a POST to %s without a valid CSRF token", request.path)
            return render(request, "error.html", {
                "title": "Refused", "message": "The form's CSRF token is missing or wrong. "
                "Reload the page and try again."}, status=403)
    return None


def _secure_headers(response: web.StreamResponse, path: str) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not path.startswith("/ui/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/ui"):
        return await handler(request)
    try:
        if not _is_public(path):
            refused = await _authenticate(request)
            if refused is not None:
                _secure_headers(refused, path)
                return refused
        response = await handler(request)
    except web.HTTPException as exc:
        _secure_headers(exc, path)
        if exc.status < 400:
            raise
        response = render(request, "error.html", {"title": exc.reason, "message": exc.text
                          if exc.text and not exc.text.startswith(str(exc.status)) else
                          exc.reason}, status=exc.status)
    except ApiError as exc:
        response = render(request, "error.html", {"title": exc.code.replace("_", " ").title(),
                                                  "message": exc.message}, status=status_of(exc))
    except DatabaseUnavailable:
        response = render(request, "error.html", {
            "title": "Database unavailable", "message": "The database is not reachable; "
            "try again in a moment."}, status=503)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, path)
        response = render(request, "error.html", {
            "title": "Internal error", "message": "Something went wrong on the server; "
            "the details are in its log."}, status=500)
    _secure_headers(response, path)
    return response
