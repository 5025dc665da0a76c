"""Domain errors: what services raise when a request cannot be done.

Each class names a kind of refusal and carries a stable API code, a human message
and details; none knows about HTTP. server/http_errors.py is the one place that maps
them to statuses and to the documented JSON body.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class ValidationFailed(ApiError):
    code = "VALIDATION_ERROR"


class Unauthorized(ApiError):
    code = "UNAUTHORIZED"


class InvalidToken(Unauthorized):
    code = "INVALID_TOKEN"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFound(ApiError):
    code = "NOT_FOUND"


class Conflict(ApiError):
    code = "CONFLICT"


class PayloadTooLarge(ApiError):
    code = "PAYLOAD_TOO_LARGE"


class Unprocessable(ApiError):
    """Well-formed but refused by a domain rule (bad signature, schema-invalid params)."""

    code = "UNPROCESSABLE"


class TooManyRequests(ApiError):
    """Too many failed credentials from this address (server/auth_failures.py)."""

    code = "TOO_MANY_REQUESTS"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    code = "SERVICE_UNAVAILABLE"


class TrustRefused(Unprocessable):
    """A signed upload refused by one of the trust rules; `reason` is the trust
    package's stable reason (its status: http_errors.TRUST_REFUSAL_STATUS)."""

    def __init__(self, message: str, *, reason: str, code: str) -> None:
        super().__init__(message, code=code, details={"reason": reason})
        self.reason = reason
