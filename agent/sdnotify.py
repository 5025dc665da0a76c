"""systemd's notify protocol, by hand: `READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=`.

The protocol is one datagram per message to the unix socket named by `NOTIFY_SOCKET`
(a path, or `@name` for the abstract namespace). A few lines of `socket` instead of a
dependency. Without `NOTIFY_SOCKET` (no systemd, or `Type=` other than notify) every
call is a no-op, so the agent works unchanged anywhere.

The watchdog (`WatchdogSec=` in the unit) sets `WATCHDOG_USEC`; we ping at half that
period, and only while every supervised loop is idle or making progress: a hung loop
or a blocked event loop stops the pings and systemd kills and restarts the agent.
`WATCHDOG_PID`, when set, must be ours (a child must not ping for its parent).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("aami.agent.sdnotify")


def _address(env: Mapping[str, str]) -> str | None:
    path = env.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]  # abstract namespace
    if path.startswith("/"):
        return path
    return None  # unset, or a transport we do not speak (vsock)


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one notification; False when there is no systemd to tell or it failed."""
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", message.split("=")[0], exc)
        return False
    return True


def watchdog_period(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of `WatchdogSec=`), or None when off."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())) or _address(env) is None:
        return None
    return usec / 2_000_000
