"""Domain errors and the one middleware that turns them into the documented JSON.

Every error response is `{"error": "<human message>", "code": "<UPPER_SNAKE>",
"details": {...}}`. Services raise `ApiError` subclasses; nothing else in the
server builds error bodies. Anything unexpected is logged with its traceback and
answered with a generic 500 body that carries no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from aami.server.db import DatabaseUnavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class ValidationFailed(ApiError):
    status = 400
    code = "VALIDATION_ERROR"


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHORIZED"


class InvalidToken(Unauthorized):
    code = "INVALID_TOKEN"


class Forbidden(ApiError):
    status = 403
    code = "FORBIDDEN"


class NotFound(ApiError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ApiError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(ApiError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class Unprocessable(ApiError):
    """Well-formed but refused by a domain rule (bad signature, schema-invalid params)."""

    status = 422
    code = "UNPROCESSABLE"


class ServiceUnavailable(ApiError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


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
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
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
