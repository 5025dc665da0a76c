"""The agent's one HTTP(S) connection to the server: request in, response out, close.

Why one kept-alive connection: behind TLS, as every site runs it, a connection per
request is a full handshake for every poll and heartbeat of every node (issue 11
measured p99 480 ms vs 54 ms at 5,000 agents). `http.client` in a worker thread keeps
the agent within its memory budget (see `client`); requests take turns on the one
connection (a lock), which is enough for a poll, a heartbeat and a report every few
seconds at most.

A kept-alive connection goes stale when the server closes it while idle. Two guards:

1. before reusing a connection, a zero-timeout `select` tells whether the server has
   closed it (an idle connection is readable only at EOF or on garbage): then a fresh
   one is opened, nothing lost;
2. if a reused connection still breaks (`RemoteDisconnected`, `BrokenPipe`,
   `ConnectionReset`), the request is sent once more on a fresh connection only when
   that cannot do harm: the request never left (the failure was while sending), or it
   is idempotent (GET, and the Agent API's executions and security events, which the
   server de-duplicates by id). A heartbeat or a registration that may have reached
   the server is not repeated; it fails and its loop tries again later.

Every exchange has a hard deadline (2 x timeout): the socket timeout bounds each read,
but a server that trickles a byte at a time would hold a loop forever. Past the
deadline the socket is shut down, which ends the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import select
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass


class TransportError(Exception):
    """No (complete) answer: network, TLS, timeout, a broken or garbled response."""


class OversizedResponse(Exception):
    """The body is larger than the agent accepts."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _Stale(Exception):
    """The reused connection broke; `sent` tells whether the request may have left."""

    def __init__(self, exc: BaseException, *, sent: bool) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.sent = sent


_BROKEN = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
           ConnectionAbortedError)


class KeepAliveTransport:
    def __init__(self, scheme: str, host: str, port: int | None, *,
                 ssl_context: ssl.SSLContext | None, timeout: float, max_bytes: int) -> None:
        self._scheme, self._host, self._port = scheme, host, port
        self._ssl = ssl_context
        self._timeout = timeout
        self._max = max_bytes
        self.deadline = 2 * timeout  # connect and read may each take `timeout`
        self._conn: http.client.HTTPConnection | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0

    def _new(self) -> http.client.HTTPConnection:
        self.connections_opened += 1
        if self._ssl is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def request(self, method: str, target: str, body: bytes | None,
                      headers: dict[str, str], *, idempotent: bool) -> Response:
        async with self._lock:
            try:
                return await self._bounded(method, target, body, headers)
            except _Stale as stale:
                if stale.sent and not idempotent:
                    raise TransportError(_describe(stale.exc)) from stale.exc
            return await self._bounded(method, target, body, headers)  # once, fresh

    async def _bounded(self, method: str, target: str, body: bytes | None,
                       headers: dict[str, str]) -> Response:
        conn = self._conn if self._conn is not None and _usable(self._conn) else None
        reused = conn is not None
        if conn is None:
            self.close()
            conn = self._conn = self._new()
        work = asyncio.ensure_future(
            asyncio.to_thread(self._exchange, conn, reused, method, target, body, headers))
        try:
            return await asyncio.wait_for(asyncio.shield(work), self.deadline)
        except TimeoutError:
            self._abort(conn)
            with contextlib.suppress(Exception):
                await work
            raise TransportError(f"no complete answer within {self.deadline:g}s") from None
        except asyncio.CancelledError:
            self._abort(conn)
            raise
        except BaseException:
            self._drop(conn)
            raise

    def _exchange(self, conn: http.client.HTTPConnection, reused: bool, method: str,
                  target: str, body: bytes | None, headers: dict[str, str]) -> Response:
        try:
            conn.request(method, target, body=body, headers=headers)
        except _BROKEN as exc:
            if reused:
                raise _Stale(exc, sent=False) from exc
            raise TransportError(_describe(exc)) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise TransportError(_describe(exc)) from exc
        try:
            resp = conn.getresponse()
            data = resp.read(self._max + 1)
        except _BROKEN as exc:
            if reused:
                raise _Stale(exc, sent=True) from exc
            raise TransportError(_describe(exc)) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ssl errors are OSErrors; ValueError: a header or chunk the server garbled.
            raise TransportError(_describe(exc)) from exc
        if len(data) > self._max:
            raise OversizedResponse(f"response larger than {self._max} bytes")
        if resp.length:  # read(n) returns short, without complaint, on an early close
            raise TransportError(f"truncated answer ({resp.length} bytes missing)")
        if resp.will_close:
            self._drop(conn)
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if self._conn is conn:
            self._conn = None

    def _abort(self, conn: http.client.HTTPConnection) -> None:
        """Unblock a worker thread stuck on this connection's socket."""
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._conn is conn:
            self._conn = None


def _usable(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive socket is readable only when the server closed it (or sent
    something nobody asked for): either way it must not carry the next request."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    if not readable:
        return True
    if isinstance(sock, ssl.SSLSocket):
        # TLS 1.3 session tickets can arrive on an idle connection: read without
        # blocking; no application data behind them means the connection is fine.
        sock.setblocking(False)
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return True
        except OSError:
            return False
        finally:
            sock.settimeout(conn.timeout)
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
