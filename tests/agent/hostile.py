"""A hostile or broken Agent API server on 127.0.0.1, for the agent's robustness tests.

A real TCP server in a thread that speaks just enough HTTP/1.1 to read a request, and
answers according to `mode`: a good Agent API (so an agent can register and poll), or
one of the faults a broken proxy, an overloaded server or an attacker can produce.
It counts requests per path and the TCP connections it accepted (for the keep-alive
test).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import Counter
from typing import Any

MODES = ("nested", "truncated", "wrong_types", "html", "error_500", "trickle", "hang",
         "garbage", "zero_interval", "huge")

GOOD_TOKEN = "tok-good-1234567890"


def _good(method: str, path: str, body: bytes) -> tuple[int, Any]:
    intervals = {"poll_interval_seconds": 1, "heartbeat_interval_seconds": 1}
    if path.endswith("/agent/register"):
        return 200, {"target_id": 1, "agent_token": GOOD_TOKEN, **intervals}
    if path.endswith("/agent/heartbeat"):
        return 200, intervals
    if path.endswith("/agent/config"):
        return 200, {"target_id": 1, "hostname": "node-h", "groups": [], **intervals}
    if path.endswith("/agent/assignments"):
        return 200, {"etag": "e1", "assignments": []}
    if path.endswith("/agent/executions") or path.endswith("/agent/security-events"):
        data = json.loads(body or b"{}")
        items = data.get("executions") or data.get("events") or []
        return 200, {"accepted": len(items), "duplicates": 0}
    return 404, {"error": "not found", "code": "NOT_FOUND", "details": {}}


class HostileServer:
    def __init__(self, mode: str = "good") -> None:
        self.mode = mode
        # Keep-alive faults in "good" mode: close each connection after its answer
        # (as an idle timeout would), or drop the second request on a connection
        # unanswered (the request reached the server; the answer never came).
        self.close_after_answer = False
        self.drop_reused = False
        self.requests: Counter[str] = Counter()
        self.connections = 0
        self.closed = 0  # connections this server has closed
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                served = 0
                while outer._serve_one(self, served):
                    served += 1

            def finish(self) -> None:
                super().finish()
                self.connection.close()
                outer.closed += 1

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _read_request(self, h: socketserver.StreamRequestHandler) -> tuple[str, str, bytes] | None:
        line = h.rfile.readline(65536)
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        length = 0
        while (header := h.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return method, path, h.rfile.read(length) if length else b""

    def _serve_one(self, h: socketserver.StreamRequestHandler, served: int) -> bool:
        """Answer one request; True to keep the connection for another."""
        try:
            request = self._read_request(h)
        except (OSError, ValueError):
            return False
        if request is None:
            return False
        method, path, body = request
        self.requests[path.split("?")[0]] += 1
        if path.endswith("/agent/heartbeat") and body:
            self.bodies.append(json.loads(body))
        mode = self.mode
        try:
            if mode == "good":
                if self.drop_reused and served >= 1:
                    return False  # read, acted on perhaps, never answered
                status, data = _good(method, path, body)
                self._send(h, status, json.dumps(data).encode(), keep=True)
                return not self.close_after_answer
            self._hostile(h, mode, path)
        except OSError:
            pass
        return False

    def _send(self, h: socketserver.StreamRequestHandler, status: int, body: bytes, *,
              kind: str = "application/json", keep: bool = False,
              length: int | None = None) -> None:
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        h.wfile.write(head.encode() + body)
        h.wfile.flush()

    def _hostile(self, h: socketserver.StreamRequestHandler, mode: str, path: str) -> None:
        if mode == "nested":
            self._send(h, 200, b"[" * 200_000 + b"]" * 200_000)
        elif mode == "truncated":
            self._send(h, 200, b'{"etag": "e1", "assign', length=4000)
        elif mode == "wrong_types":
            self._send(h, 200, json.dumps({
                "etag": 5, "assignments": {"a": 1}, "target_id": "one", "agent_token": 7,
                "poll_interval_seconds": "30", "heartbeat_interval_seconds": None,
                "accepted": "all", "duplicates": [], "groups": "x", "hostname": 1}).encode())
        elif mode == "html":
            self._send(h, 200, b"<html><body><h1>Welcome to nginx!</h1></body></html>",
                       kind="text/html")
        elif mode == "error_500":
            self._send(h, 500, b"<html><body>Internal Server Error</body></html>",
                       kind="text/html")
        elif mode == "trickle":  # a byte at a time, never finishing
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(600):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.1)
        elif mode == "hang":  # accept, read, never answer
            time.sleep(60)
        elif mode == "garbage":
            h.wfile.write(b"\x00\xff\xfe not http at all\r\n\r\n" * 10)
        elif mode == "zero_interval":
            self._send(h, 200, json.dumps({
                "poll_interval_seconds": 0, "heartbeat_interval_seconds": 0, "target_id": 1,
                "agent_token": GOOD_TOKEN, "etag": "e2", "groups": [], "hostname": "h",
                "assignments": [{"policy_id": 1, "script": {},
                                 "schedule": {"mode": "interval", "interval_seconds": 0}}],
            }).encode())
        elif mode == "huge":
            self._send(h, 200, b" " * 2_000_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
