"""One supervisor for the agent's long-lived loops (poll, schedule, report, heartbeat,
the `/metrics` listener and the control socket).

Why: a loop task that raises dies silently (nobody awaits it until shutdown), and the
node looks alive while, say, its heartbeats have stopped. Under the supervisor:

- an unexpected exception is logged once, with its traceback, at ERROR, counted in
  `aami_agent_loop_restarts_total{loop}`, and the loop restarts after a back-off
  (1 s doubling to `Limits.loop_backoff_cap`);
- a loop that fails `Limits.loop_max_failures` times within `Limits.loop_failure_window`
  stops the agent with a non-zero exit, so systemd restarts the whole process (a fault
  that survives restarts of its loop may not survive a fresh process);
- each loop reports progress through its `LoopHandle`: `ok()` after a successful
  cycle, `progress()` after each step of a long one, and `sleep()` while it waits
  legitimately (idle until a deadline). `stalled()` names a loop that is neither idle
  nor progressing for `Limits.loop_stall` seconds: the systemd watchdog stops being fed
  and systemd kills and restarts the hung agent (see `sdnotify`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("aami.agent.supervisor")


@dataclass
class LoopHandle:
    """What a loop sees of the supervisor: report progress, sleep, be woken."""

    name: str
    clock: Callable[[], float] = time.monotonic
    last_success: float | None = None  # wall clock, for `status`
    last_progress: float = 0.0  # monotonic
    idle_until: float | None = None  # monotonic deadline of a legitimate wait
    restarts: int = 0
    failures: list[float] = field(default_factory=list)  # monotonic failure times
    done: bool = False

    def progress(self) -> None:
        self.last_progress = self.clock()

    def ok(self) -> None:
        """One cycle of this loop went well."""
        self.progress()
        self.last_success = time.time()

    async def sleep(self, seconds: float, *events: asyncio.Event) -> None:
        """Wait `seconds` or until one of `events` is set (then clear them).

        Idle counts as progress until the deadline (plus a second of slack). With no
        events this is a plain sleep: `asyncio.wait` refuses an empty set, which is
        what killed the heartbeat loop."""
        seconds = max(0.0, seconds)
        self.idle_until = self.clock() + seconds + 1.0
        try:
            if not events:
                await asyncio.sleep(seconds)
                return
            waits = [asyncio.ensure_future(e.wait()) for e in events]
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            for e in events:
                e.clear()
        finally:
            self.idle_until = None
            self.progress()

    async def idle_forever(self) -> None:
        """For servers: serving connections is the event loop's work, not ours."""
        self.idle_until = float("inf")
        await asyncio.Event().wait()

    def stalled(self, now: float, limit: float) -> bool:
        if self.done or (self.idle_until is not None and now <= self.idle_until):
            return False
        return now - self.last_progress > limit

    def status(self) -> dict[str, Any]:
        return {
            "last_success": None if self.last_success is None else
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_success)),
            "restarts": self.restarts,
        }


LoopBody = Callable[[LoopHandle], Awaitable[None]]


class LoopsFailing(Exception):
    """A loop failed too often: the agent must exit non-zero."""


class Supervisor:
    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 600.0,
        backoff_cap: float = 60.0,
        stall_limit: float = 600.0,
        on_restart: Callable[[str], None] = lambda name: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.backoff_cap = backoff_cap
        self.stall_limit = stall_limit
        self.on_restart = on_restart
        self.clock = clock
        self.handles: dict[str, LoopHandle] = {}
        self._bodies: dict[str, LoopBody] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.failed = asyncio.Event()
        self.failure: str | None = None

    def add(self, name: str, body: LoopBody) -> None:
        self.handles[name] = LoopHandle(name, clock=self.clock, last_progress=self.clock())
        self._bodies[name] = body

    def start(self) -> None:
        for name, body in self._bodies.items():
            self._tasks.append(asyncio.create_task(self._keep(self.handles[name], body),
                                                   name=f"aami-loop-{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def stalled(self) -> list[str]:
        now = self.clock()
        return [h.name for h in self.handles.values() if h.stalled(now, self.stall_limit)]

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: h.status() for name, h in self.handles.items()}

    async def _keep(self, handle: LoopHandle, body: LoopBody) -> None:
        while True:
            try:
                await body(handle)
                handle.done = True  # a loop that returns has nothing more to do
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._failed(handle, exc)
                if delay is None:
                    return
            await handle.sleep(delay)

    def _failed(self, handle: LoopHandle, exc: BaseException) -> float | None:
        """Count one failure; the back-off before the restart, or None to give up."""
        now = self.clock()
        handle.failures = [t for t in handle.failures if now - t < self.window] + [now]
        handle.restarts += 1
        self.on_restart(handle.name)
        if len(handle.failures) >= self.max_failures:
            log.error("loop %s failed %d times in %gs; stopping the agent so that systemd "
                      "restarts it: %s", handle.name, len(handle.failures), self.window,
                      _one_line(exc), exc_info=exc)
            self.failure = handle.name
            self.failed.set()
            return None
        delay = min(self.backoff_cap, 2.0 ** (len(handle.failures) - 1))
        log.error("loop %s failed (restart %d, in %gs): %s", handle.name, handle.restarts,
                  delay, _one_line(exc), exc_info=exc)
        return delay


def _one_line(exc: BaseException) -> str:
    text = f"{exc.__class__.__name__}: {exc}"
    return text.splitlines()[0][:300] if text else exc.__class__.__name__
