"""The CLI's one door to the config server: JSON over HTTP(S) with a bearer token.

Small on purpose (urllib, no extra dependency). Every foreign failure is translated
here into the CLI's own errors: an error response from the server becomes `ApiError`
(exit 1, printed as `error: <message> (<CODE>)`), a network or TLS failure becomes
`OperationFailed`, and a bad URL or CA file becomes `UsageError` (exit 2).
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from aami.cli.errors import OperationFailed, UsageError

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class ApiError(OperationFailed):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, code: str, details: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


class ApiClient:
    def __init__(
        self, server: str, token: str, *, ca_file: str | None = None, timeout: float = 30
    ) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"--server: {server!r} is not an http(s)://HOST[:PORT] URL")
        if not token:
            raise UsageError("--token: must not be empty")
        if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
            print(
                f"warning: {server} is plain http; the token and data travel unencrypted",
                file=sys.stderr,
            )
        self.base = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = _tls_context(ca_file) if parsed.scheme == "https" else None

    def get(self, path: str, **query: str) -> Reply:
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Reply:
        return self.request("PUT", path, body)

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = f"{self.base}/api/v1{path}"
        request = urllib.request.Request(  # noqa: S310 -- scheme checked in __init__
            url, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 -- scheme checked in __init__
                request, timeout=self.timeout, context=self.context
            ) as response:
                return Reply(response.status, _decode(response.read(), response.status))
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except urllib.error.URLError as exc:
            raise OperationFailed(f"cannot reach {self.base}: {_reason(exc.reason)}") from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise OperationFailed(f"cannot reach {self.base}: {_reason(exc)}") from None


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise UsageError(f"--ca-file {ca_file}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"--ca-file {ca_file}: not a PEM CA bundle ({exc})") from None


def _decode(raw: bytes, status: int) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise OperationFailed(f"server answered {status} with a body that is not JSON") from None


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ApiError(
            exc.code, body["error"], str(body.get("code") or exc.code), body.get("details")
        )
    text = raw.decode("utf-8", "replace").strip().splitlines()[:1]
    message = text[0][:200] if text else (exc.reason or "error")
    return ApiError(exc.code, f"server answered {exc.code}: {message}", f"HTTP_{exc.code}")


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message}); pass --ca-file"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
