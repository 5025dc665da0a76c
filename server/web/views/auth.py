"""Login, logout, the root redirect and the embedded static files.

Login has no session yet, so its form is protected by a double-submit cookie: a
random value set as an HttpOnly, SameSite=Strict cookie and echoed in a hidden field;
a cross-site page can neither read the cookie nor make the browser send it.
"""

from __future__ import annotations

import functools
import logging
import mimetypes
import re
from importlib import resources

from aiohttp import web

from aami.server.appkeys import AUTHENTICATOR, DATABASE
from aami.server.logsafe import token_prefix
from aami.server.services import ui_sessions
from aami.server.web import sessions
from aami.server.web.pages import page
from aami.server.web.render import USER_KEY, render

log = logging.getLogger(__name__)

_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(css|js|svg|png)$")


def _safe_next(value: str | None) -> str:
    # Only local UI paths: never an open redirect to another site.
    if value and value.startswith("/ui/") and not value.startswith("//"):
        return value
    return "/ui/"


def _cookie_args(request: web.Request) -> dict:
    return {"httponly": True, "samesite": "Strict", "secure": request.secure, "path": "/ui"}


async def root(request: web.Request) -> web.StreamResponse:
    """The server's root: the web UI."""
    raise web.HTTPFound("/ui/")


async def login_form(request: web.Request, error: str | None = None,
                     status: int = 200) -> web.StreamResponse:
    """The login page."""
    value = sessions.new_login_csrf()
    response = render(request, "login.html", {
        "error": error, "login_csrf": value, "next": _safe_next(request.query.get("next"))},
        status=status)
    response.set_cookie(sessions.LOGIN_CSRF_COOKIE, value, max_age=3600,
                        **_cookie_args(request))
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login page."""
    return await login_form(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    """Trade an admin API token for a session."""
    form = await request.post()
    expected = request.cookies.get(sessions.LOGIN_CSRF_COOKIE, "")
    given = form.get("csrf_token")
    if not expected or not sessions.csrf_matches(expected, given if isinstance(given, str)
                                                 else None):
        return await login_form(request, "The login form expired; please try again.", 403)
    token = form.get("token")
    secret = token if isinstance(token, str) else ""
    # Failed logins are slowed per address like bad bearer tokens (server/auth.py).
    failures = request.app[AUTHENTICATOR].failures
    wait = failures.retry_after(request.remote, "login")
    if wait is not None:
        response = await login_form(
            request, f"Too many failed logins from your address; try again in {wait}s.", 429)
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        session_id, _user = await request.app[DATABASE].run(ui_sessions.login, secret)
    except ui_sessions.LoginFailed as exc:
        delay = failures.failed(request.remote, "login")
        log.warning("failed web UI login with %s from %s: %s%s", token_prefix(secret.strip()),
                    request.remote, exc, f"; this address waits {delay:g}s" if delay else "")
        return await login_form(request, str(exc), 401)
    failures.succeeded(request.remote)
    nxt = form.get("next")
    response = web.HTTPSeeOther(_safe_next(nxt if isinstance(nxt, str) else None))
    response.set_cookie(sessions.COOKIE, session_id,
                        max_age=int(ui_sessions.LIMITS.lifetime.total_seconds()),
                        **_cookie_args(request))
    response.del_cookie(sessions.LOGIN_CSRF_COOKIE, path="/ui")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session."""
    user = request[USER_KEY]
    await request.app[DATABASE].run(ui_sessions.logout, user.session_hash)
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(sessions.COOKIE, path="/ui")
    raise response


@functools.cache
def _static_file(name: str) -> bytes | None:
    entry = resources.files("aami.server").joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


async def static(request: web.Request) -> web.StreamResponse:
    """Embedded CSS, icons (no CDN, no external fonts)."""
    name = request.match_info["name"]
    body = _static_file(name) if _STATIC_NAME.match(name) else None
    if body is None:
        raise web.HTTPNotFound()
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return web.Response(body=body, content_type=kind,
                        headers={"Cache-Control": "public, max-age=3600"})


ROUTES = [
    page("GET", "/", root),
    page("GET", "/ui", root),
    page("GET", "/ui/login", login_page, ("next",)),
    page("POST", "/ui/login", login_submit),
    page("POST", "/ui/logout", logout),
    page("GET", "/ui/static/{name}", static),
]
