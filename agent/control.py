"""The local control socket: `aami-agent poll --now` and `aami-agent status`.

A unix stream socket `control.sock` in the state directory, mode 0600 inside a 0700
directory: only root (or the agent's user) can ask for a poll or read the status, so
the socket is not a way for other local users to make the agent do anything. One JSON
request line in, one JSON response line out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("aami.agent.control")

SOCKET_NAME = "control.sock"

Handler = Callable[[str], Awaitable[dict[str, Any]]]


class ControlUnavailable(Exception):
    """No agent is listening on the control socket."""


async def serve_control(path: str | os.PathLike[str], handler: Handler) -> asyncio.AbstractServer:
    sock_path = Path(path)
    sock_path.unlink(missing_ok=True)  # a stale socket from a crashed agent

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            try:
                command = str(json.loads(line).get("command", ""))
            except (ValueError, AttributeError):
                command = ""
            try:
                reply = await handler(command)
            except Exception as exc:  # one bad request must not take the socket down
                log.exception("control command %r failed", command)
                reply = {"ok": False, "message": f"internal error: {exc.__class__.__name__}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    old_umask = os.umask(0o177)  # the socket is created 0600 with no window
    try:
        server = await asyncio.start_unix_server(handle, path=str(sock_path))
    finally:
        os.umask(old_umask)
    return server


def send_command(path: str | os.PathLike[str], command: str, *, timeout: float) -> dict[str, Any]:
    """Synchronous client used by the CLI (no event loop needed for one request)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlUnavailable(f"no agent is listening on {path}") from exc
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = json.loads(b"".join(chunks) or b"{}")
    if not isinstance(data, dict):
        raise ValueError("the agent sent a malformed reply")
    return data
