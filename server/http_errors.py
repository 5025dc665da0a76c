"""Domain errors to HTTP: the one place that knows statuses, and the middleware
that answers every API error with the documented body.

Every error response is `{"error": "<human message>", "code": "<UPPER_SNAKE>",
"details": {...}}`. Services raise `server.errors` classes; nothing else in the
server builds error bodies. Anything unexpected is logged with its traceback and
answered with a generic 500 body that carries no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from aami.server.db import DatabaseUnavailable
from aami.server.errors import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    TrustRefused,
    Unauthorized,
    Unprocessable,
    ValidationFailed,
)

log = logging.getLogger(__name__)

STATUS: dict[type[ApiError], int] = {
    ApiError: 400,
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unprocessable: 422,
    TooManyRequests: 429,
    ServiceUnavailable: 503,
}
# A refused signed upload: size limits are 413, a version not above the stored ones
# conflicts with server state (409), any other broken or failing check is 422.
TRUST_REFUSAL_STATUS = {"content_too_large": 413, "payload_too_large": 413, "rollback": 409}


def status_of(error: ApiError) -> int:
    if isinstance(error, TrustRefused):
        return TRUST_REFUSAL_STATUS.get(error.reason, 422)
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def error_response(status: int, code: str, message: str,
                   details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(
        {"error": message, "code": code, "details": details or {}}, status=status
    )


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE",
    429: "TOO_MANY_REQUESTS",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(status_of(exc), exc.code, exc.message, exc.details)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except DatabaseUnavailable as exc:
        log.error("database unavailable: %s", exc)
        return error_response(503, "DATABASE_UNAVAILABLE", "the database is not reachable")
    except web.HTTPException as exc:
        if exc.status < 400 or not _wants_json(request):
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        message = exc.reason if exc.status != 413 else "request body is too large"
        response = error_response(exc.status, code, message)
        if "Allow" in exc.headers:  # a 405 must say which methods are allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "INTERNAL_ERROR", "internal server error")


def _wants_json(request: web.Request) -> bool:
    # API clients always get JSON errors; the web UI renders its own pages.
    return not request.path.startswith("/ui")
