"""Template rendering: one Jinja2 environment per application (aiohttp-jinja2),
loaded from the package's templates.

Templates are compiled once and cached; autoescaping is on for every template, so
hostnames, script output and error messages cannot inject markup. Filters that turn
stored values into readable text (relative times, durations) are pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from aami.server import __version__
from aami.server.services.ui_sessions import UiUser
from aami.server.timefmt import iso, parse_iso, utcnow

USER_KEY = "aami_ui_user"  # request[USER_KEY]: the UiUser, set by the session middleware


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_iso(value)


def human_duration(seconds: float | None) -> str:
    """3725 -> '1h 2m'; the two largest units only, which is what people read."""
    if seconds is None:
        return "—"
    seconds = int(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def reltime(value: datetime | str | None, now: datetime | None = None) -> str:
    when = _as_datetime(value)
    if when is None:
        return "never"
    delta = ((now or utcnow()) - when).total_seconds()
    if abs(delta) < 5:
        return "just now"
    text = human_duration(delta)
    return f"{text} ago" if delta > 0 else f"in {text}"


def abstime(value: datetime | str | None) -> str:
    when = _as_datetime(value)
    return "—" if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def isotime(value: datetime | str | None) -> str:
    when = _as_datetime(value)
    return iso(when) or ""


def millis(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value} ms" if value < 10_000 else human_duration(value / 1000)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def query_with(query: dict[str, str], **changes: Any) -> str:
    """The current query string with some keys changed (None removes a key)."""
    merged = {k: v for k, v in query.items() if v not in (None, "")}
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return "?" + urlencode(merged) if merged else "?"


def setup_templates(app: web.Application) -> None:
    """Attach the template environment to `app` (called by `create_app`)."""
    filters: dict[str, Callable[..., str]] = {
        "reltime": reltime, "abstime": abstime, "isotime": isotime, "millis": millis,
        "duration": human_duration, "pretty_json": pretty_json,
    }
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("aami.server", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        filters=filters,
    )
    aiohttp_jinja2.get_env(app).globals.update(version=__version__, query_with=query_with)


def render(request: web.Request, template: str, context: dict[str, Any], *,
           status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    user: UiUser | None = request.get(USER_KEY)
    response = aiohttp_jinja2.render_template(
        template, request,
        {"user": user, "request_path": request.path, "query": dict(request.query), **context},
        status=status,
    )
    if headers:
        response.headers.update(headers)
    return response
