"""The one door from the agent to the config server.

`AgentClient` is the whole contract the rest of the agent sees: eight coroutine
methods with typed results, and the agent's own exceptions. `HttpAgentClient` is the
real implementation; unit tests of the poller, spool and reporter use an in-memory
implementation of the same Protocol (the sanctioned seam).

Why not aiohttp: the agent has 40 MB for its whole process tree (docs/agent.md);
`import aiohttp` alone costs ~14 MB over asyncio, while `http.client` (already pulled in
by the standard library) costs ~2 MB. The agent makes one request every few seconds at
most, so each call runs `http.client` in a worker thread, on one kept-alive connection
with a hard deadline (`transport`). TLS uses the system store or the pinned site CA
(`server.ca_file`); certificate and hostname checks are never disabled.

Foreign exceptions (transport failures, JSON errors, shapes that do not parse) are
translated here into the agent's own, chained with `raise ... from`.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from aami.agent.transport import KeepAliveTransport, OversizedResponse, TransportError
from aami.agent.transport import Response as _Response
from aami.agent.wire import (
    Ack,
    AssignmentSet,
    Intervals,
    ProtocolError,
    Registration,
    RemoteConfig,
)


class AgentClientError(Exception):
    """Base of everything the client raises."""


class ServerUnavailable(AgentClientError):
    """Could not talk to the server (network, TLS, timeout, 5xx): retry later."""


class MalformedResponse(AgentClientError):
    """The server answered, but not in the documented shape."""


class ServerRefused(AgentClientError):
    """A 4xx answer with the documented error body."""

    def __init__(self, status: int, code: str, message: str, *,
                 documented: bool = True) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        # The answer carried the API's error body: the server itself refused. Without
        # it (an HTML page from a proxy, say) nothing is known about the request.
        self.documented = documented


class InvalidToken(ServerRefused):
    """401 INVALID_TOKEN: the token is unknown (the server forgot us, or it was rotated)."""


class Conflict(ServerRefused):
    """409: the hostname is bound and the bootstrap token does not allow re-binding."""


class PayloadTooLarge(ServerRefused):
    """413: split the batch."""


class NotFound(ServerRefused):
    """404."""


class AgentClient(Protocol):
    """What the agent needs from the server; nothing else reaches the network."""

    def set_token(self, token: str | None) -> None: ...

    async def register(
        self,
        bootstrap_token: str,
        hostname: str,
        agent_version: str,
        system_info: Mapping[str, Any],
    ) -> Registration: ...

    async def heartbeat(self, body: Mapping[str, Any]) -> Intervals: ...

    async def get_config(self) -> RemoteConfig: ...

    async def get_assignments(self, etag: str | None) -> AssignmentSet | None:
        """None means 304 Not Modified."""
        ...

    async def get_script(self, sha256: str) -> bytes: ...

    async def post_executions(self, records: Sequence[Mapping[str, Any]]) -> Ack: ...

    async def post_security_events(self, events: Sequence[Mapping[str, Any]]) -> Ack: ...

    async def rotate_token(self) -> str: ...


IDEMPOTENT_POSTS = frozenset({"/agent/executions", "/agent/security-events"})


class HttpAgentClient:
    """`AgentClient` over HTTP(S) with the standard library."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        timeout: float = 30.0,
        max_response_bytes: int = 32 * 1024 * 1024,
        token: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must be http(s)://host[:port], got {base_url!r}")
        self._prefix = parts.path.rstrip("/") + "/api/v1"
        self._token = token
        context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
        self._transport = KeepAliveTransport(
            parts.scheme, parts.hostname, parts.port, ssl_context=context, timeout=timeout,
            max_bytes=max_response_bytes)

    def set_token(self, token: str | None) -> None:
        self._token = token

    # -- transport ---------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

    @property
    def connections_opened(self) -> int:
        return self._transport.connections_opened

    async def _send(self, method: str, path: str, body: bytes | None,
                    headers: dict[str, str]) -> _Response:
        # Executions and security events are idempotent by id: safe to send twice.
        idempotent = method == "GET" or path in IDEMPOTENT_POSTS
        try:
            return await self._transport.request(method, self._prefix + path, body, headers,
                                                 idempotent=idempotent)
        except TransportError as exc:
            raise ServerUnavailable(f"{method} {path}: {exc}") from exc
        except OversizedResponse as exc:
            raise MalformedResponse(f"{method} {path}: {exc}") from exc

    async def _call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        bearer: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> _Response:
        headers = {"Accept": "application/json", "User-Agent": "aami-agent"}
        token = bearer if bearer is not None else self._token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = None
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        resp = await self._send(method, path, body, headers)
        if resp.status >= 500:
            raise ServerUnavailable(f"{method} {path}: HTTP {resp.status}")
        if resp.status >= 400:
            raise _refusal(resp)
        return resp

    async def _json(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        resp = await self._call(method, path, payload, **kw)
        return _decode(resp, f"{method} {path}")

    # -- the Agent API -------------------------------------------------------------

    async def register(
        self,
        bootstrap_token: str,
        hostname: str,
        agent_version: str,
        system_info: Mapping[str, Any],
    ) -> Registration:
        body = {"hostname": hostname, "agent_version": agent_version, "system_info": system_info}
        data = await self._json("POST", "/agent/register", body, bearer=bootstrap_token)
        return _parse(Registration.from_json, data)

    async def heartbeat(self, body: Mapping[str, Any]) -> Intervals:
        return _parse(Intervals.from_json, await self._json("POST", "/agent/heartbeat", body))

    async def get_config(self) -> RemoteConfig:
        return _parse(RemoteConfig.from_json, await self._json("GET", "/agent/config"))

    async def get_assignments(self, etag: str | None) -> AssignmentSet | None:
        extra = {"If-None-Match": f'"{etag}"'} if etag else None
        resp = await self._call("GET", "/agent/assignments", extra=extra)
        if resp.status == 304:
            return None
        return _parse(AssignmentSet.from_json, _decode(resp, "GET /agent/assignments"))

    async def get_script(self, sha256: str) -> bytes:
        resp = await self._call(
            "GET", f"/agent/scripts/{sha256}", extra={"Accept": "application/octet-stream"}
        )
        return resp.body

    async def post_executions(self, records: Sequence[Mapping[str, Any]]) -> Ack:
        data = await self._json("POST", "/agent/executions", {"executions": list(records)})
        return _parse(Ack.from_json, data)

    async def post_security_events(self, events: Sequence[Mapping[str, Any]]) -> Ack:
        data = await self._json("POST", "/agent/security-events", {"events": list(events)})
        return _parse(Ack.from_json, data)

    async def rotate_token(self) -> str:
        data = await self._json("POST", "/agent/rotate-token", {})
        token = data.get("agent_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise MalformedResponse("rotate-token: missing agent_token")
        return token


def _decode(resp: _Response, what: str) -> Any:
    """The body as JSON; anything else (an HTML error page, garbage, JSON nested deep
    enough to exhaust the parser's recursion) is a malformed answer, not a crash."""
    try:
        return json.loads(resp.body)
    except ValueError as exc:  # includes bad UTF-8
        kind = resp.headers.get("content-type", "?").split(";")[0]
        raise MalformedResponse(f"{what}: body is not JSON ({kind})") from exc
    except RecursionError as exc:
        raise MalformedResponse(f"{what}: JSON nested too deeply") from exc


def _parse(parser: Any, data: Any) -> Any:
    try:
        return parser(data)
    except ProtocolError as exc:
        raise MalformedResponse(str(exc)) from exc
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        # The typed parsers check shapes; this is the net under them.
        raise MalformedResponse(f"unexpected answer: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__



def _refusal(resp: _Response) -> ServerRefused:
    code, message, documented = "HTTP_ERROR", f"HTTP {resp.status}", False
    try:
        body = json.loads(resp.body)
        if isinstance(body, dict):
            documented = isinstance(body.get("code"), str) and isinstance(body.get("error"), str)
            code = str(body.get("code") or code)
            message = str(body.get("error") or message)
    except (ValueError, RecursionError):
        pass
    if resp.status == 401 and code == "INVALID_TOKEN":
        return InvalidToken(resp.status, code, message)
    kind = {409: Conflict, 413: PayloadTooLarge, 404: NotFound}.get(resp.status, ServerRefused)
    return kind(resp.status, code, message, documented=documented)
