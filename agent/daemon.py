"""The agent process: wires the flow and runs its four loops.

    poll loop       poller (assignments, verify, cache)  → wakes the scheduler
    schedule loop   scheduler.decide → runner (re-verify, mark, execute, spool) → wakes reporter
    report loop     reporter (spooled results and security events, exactly once)
    heartbeat loop  heartbeat + system info; the answer sets the intervals

plus the `/metrics` listener and the control socket (`poll --now`, `status`). All six
run under `supervisor.Supervisor`: a loop that raises is logged, counted and restarted
with back-off; one that keeps failing stops the agent with exit 1 (systemd restarts it).

Degraded mode: if the server is unreachable or has forgotten this agent without a
bootstrap token to re-register, the schedule loop keeps running the last verified
assignments from the state file and the spool keeps every result until the server
is back. SIGTERM/SIGINT: stop polling and scheduling, give running scripts
`Limits.shutdown_grace` to finish (then kill their process groups: their markers make
them "interrupted" at the next start), try one last report, remove the socket, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from typing import Any

from aami.agent import __version__, sdnotify, system_info
from aami.agent.cache import ScriptCache, ScriptRefused, ScriptSource, TrustedKeys, refusal_event
from aami.agent.client import AgentClient, AgentClientError, HttpAgentClient
from aami.agent.config import AgentConfig
from aami.agent.control import SOCKET_NAME, serve_control
from aami.agent.executor import utc_now
from aami.agent.heartbeat import send_heartbeat
from aami.agent.logging_setup import Masker
from aami.agent.metrics import AgentMetrics, render, serve_metrics
from aami.agent.poller import Poller, PollOutcome, next_delay
from aami.agent.registration import NotRegistered, Registrar
from aami.agent.reporter import Reporter
from aami.agent.runbook import RunBookStore
from aami.agent.runner import Runner
from aami.agent.scheduler import RunDecision, ScheduleMemory, decide, seconds_until_next
from aami.agent.spool import EventSpool, ExecutionSpool
from aami.agent.state import StateStore, TrustedState, ensure_state_dir
from aami.agent.status import build_status
from aami.agent.supervisor import LoopBody, LoopHandle, Supervisor
from aami.agent.wire import Assignment

log = logging.getLogger("aami.agent")


def _failure_level(exc: Exception) -> int:
    """A registration refusal the poll has just logged is not said again by the other
    loops (DEBUG); any other failure is a WARNING."""
    return logging.DEBUG if isinstance(exc, NotRegistered) and exc.repeated \
        else logging.WARNING


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        client: AgentClient | None = None,
        masker: Masker | None = None,
    ) -> None:
        self.config = config
        limits = config.limits
        self.dir = ensure_state_dir(config.state_dir)
        store = StateStore(self.dir)
        raw = store.load_raw()
        self.book_store = RunBookStore(self.dir)
        self.book = self.book_store.load(raw)  # before state.json drops the old fields
        self.trusted = TrustedState(store)
        self.masker = masker or Masker(config.logging.mask_patterns)
        self.masker.add_secret(config.bootstrap_token)
        self.masker.add_secret(self.trusted.agent_token)
        self.metrics = AgentMetrics()
        self.client: AgentClient = client or HttpAgentClient(
            config.server.url, ca_file=config.server.ca_file, timeout=config.server.timeout,
            max_response_bytes=limits.max_response_bytes,
        )
        self.keys = TrustedKeys(config.trust.keys_dir)
        self.source = ScriptSource(ScriptCache(self.dir / "scripts"), self.keys,
                                   self.client.get_script, max_bytes=limits.max_script_bytes)
        self.executions = ExecutionSpool(self.dir / "spool" / "executions",
                                         max_records=limits.spool_max_records)
        self.events = EventSpool(self.dir / "spool" / "events",
                                 max_records=limits.spool_max_records)
        self.reporter = Reporter(self.client, self.executions, self.events,
                                 batch_size=limits.report_batch_size)
        self.registrar = Registrar(
            self.client, self.trusted, hostname=config.agent.hostname,
            bootstrap_token=config.bootstrap_token, system_info=self._system_info,
            on_token=self.masker.add_secret,
        )
        self.poller = Poller(self.client, self.registrar, self.source, self.trusted, self.book,
                             self.metrics, default_run_as=config.executor.run_as,
                             on_refusal=self.refused)
        self.runner = Runner(config, self.trusted, self.book, self.book_store, self.source,
                             self.executions,
                             self.metrics, self.masker, on_refusal=self.refused,
                             on_result=self._result_ready)
        self.started = time.monotonic()
        self._sysinfo: dict[str, Any] = {}
        self._sysinfo_at = -1e9
        self._reported_refusals: set[tuple[Any, ...]] = set()
        self._stop = asyncio.Event()
        self._wake_scheduler = asyncio.Event()
        self._wake_reporter = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._poll_waiters: list[asyncio.Future[PollOutcome]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.supervisor = self._supervisor()

    # -- shared helpers -------------------------------------------------------------------

    def _system_info(self) -> dict[str, Any]:
        return self._sysinfo

    async def _refresh_system_info(self) -> None:
        if time.monotonic() - self._sysinfo_at > self.config.limits.system_info_ttl:
            self._sysinfo = await system_info.collect()
            self._sysinfo_at = time.monotonic()

    def refused(self, exc: ScriptRefused, assignment: Assignment | None) -> None:
        """Every refusal: a log line, a metric, and (once per cause) a security event."""
        name = assignment.script.name if assignment else "?"
        log.warning("REFUSED %s (policy %s): %s: %s", name,
                    assignment.policy_id if assignment else None, exc.reason, exc.message)
        self.metrics.count_refusal(exc.reason)
        key = (assignment.policy_id if assignment else None,
               assignment.script.sha256 if assignment else None, exc.reason)
        if key not in self._reported_refusals:
            self._reported_refusals.add(key)
            self.events.put(refusal_event(exc, assignment, utc_now()))
            self._wake_reporter.set()

    def _result_ready(self) -> None:
        self._wake_reporter.set()

    def assignments(self) -> list[Assignment]:
        return self.trusted.assignments()

    def memory(self) -> ScheduleMemory:
        return self.runner.memory()

    def poll_interval(self) -> float:
        return self.trusted.poll_interval(self.config.agent.poll_interval)

    def status(self, daemon: str = "running") -> dict[str, Any]:
        self.metrics.spool_pending = self.executions.count() + self.events.count()
        return build_status(
            self.trusted.record, self.book, daemon=daemon, server=self.config.server.url,
            hostname=self.config.agent.hostname,
            spool_pending={"executions": self.executions.count(), "events": self.events.count()},
            spool_dropped=self.executions.dropped + self.events.dropped,
            running=set(self.runner.running), refused=self.metrics.refused,
            loops=self.supervisor.status(),
        )

    def metrics_page(self) -> str:
        self.metrics.spool_pending = self.executions.count() + self.events.count()
        self.metrics.spool_dropped = self.executions.dropped + self.events.dropped
        return render(self.metrics, __version__)

    def due(self) -> list[RunDecision]:
        return decide(self.assignments(), self.memory(), now=time.time(),
                      hostname=self.config.agent.hostname,
                      jitter_cap=self.config.limits.interval_jitter_cap)

    async def report(self) -> bool:
        """Flush the spool; True when everything went out."""
        try:
            stats = await self.registrar.call(self.reporter.flush)
        except (AgentClientError, NotRegistered) as exc:
            self.metrics.reports_failed += 1
            log.log(_failure_level(exc), "report failed, results stay spooled: %s", exc)
            return False
        if stats.accepted or stats.duplicates:
            log.info("reported %d records (%d already known to the server)",
                     stats.accepted + stats.duplicates, stats.duplicates)
        return True

    async def heartbeat(self) -> bool:
        await self._refresh_system_info()
        try:
            intervals = await self.registrar.call(lambda: send_heartbeat(
                self.client, self.book, started_monotonic=self.started,
                system_info=self._sysinfo, polls_total=self.metrics.poll_count,
                polls_failed=self.metrics.polls_failed))
        except (AgentClientError, NotRegistered) as exc:
            self.metrics.heartbeats_failed += 1
            log.log(_failure_level(exc), "heartbeat failed: %s", exc)
            return False
        self.trusted.set_intervals(intervals.poll_interval_seconds,
                                   intervals.heartbeat_interval_seconds)
        return True

    def save(self) -> None:
        """Everything durable, now (end of a cycle, shutdown)."""
        self.trusted.save()
        self.runner.save_book()

    def recover(self) -> None:
        n = self.executions.recover_interrupted(utc_now())
        if n:
            log.warning("%d interrupted run(s) from before the restart will be reported", n)

    # -- one cycle (--once) -----------------------------------------------------------------

    async def run_once(self) -> int:
        """Register, poll, run what is due, report. 0 when all of it went well."""
        self.recover()
        await self._refresh_system_info()
        outcome = await self.poller.poll()
        if not outcome.ok:
            log.error("poll failed: %s", outcome.message)
        decisions = self.due()
        records = await asyncio.gather(*(self.runner.run(d) for d in decisions))
        reported = await self.report()
        if await self.heartbeat():
            await self.refresh_config()
        self.save()
        all_ran = all(r is not None and r.success for r in records)
        refused = sum(self.metrics.refused.values())
        ok = outcome.ok and reported and all_ran and not refused
        log.info("cycle done: %d run(s), %d refused, report %s", len(records), refused,
                 "ok" if reported else "pending")
        return 0 if ok else 1

    # -- the daemon ---------------------------------------------------------------------------

    def _supervisor(self) -> Supervisor:
        limits = self.config.limits
        sup = Supervisor(
            max_failures=limits.loop_max_failures, window=limits.loop_failure_window,
            backoff_cap=limits.loop_backoff_cap,
            stall_limit=max(limits.loop_stall, 3 * self.config.server.timeout),
            on_restart=self.metrics.count_loop_restart,
        )
        loops: dict[str, LoopBody] = {
            "poll": self._poll_loop, "schedule": self._schedule_loop,
            "report": self._report_loop, "heartbeat": self._heartbeat_loop,
            "control": self._control_loop,
        }
        if self.config.metrics.listen:
            loops["metrics"] = self._metrics_loop
        for name, body in loops.items():
            sup.add(name, body)
            self.metrics.loop_restarts.setdefault(name, 0)
        return sup

    async def run_forever(self) -> int:
        """The daemon: 0 after SIGTERM/SIGINT, 1 when a loop kept failing."""
        self.recover()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.supervisor.start()
        log.info("aami-agent %s started (hostname %s, server %s)", __version__,
                 self.config.agent.hostname, self.config.server.url)
        watchdog = asyncio.create_task(self._watchdog())
        failed = asyncio.ensure_future(self.supervisor.failed.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([failed, stopped], return_when=asyncio.FIRST_COMPLETED)
        failed.cancel()
        stopped.cancel()
        watchdog.cancel()
        sdnotify.notify("STOPPING=1")
        code = 1 if self.supervisor.failure else 0
        log.info("stopping" if not code else
                 f"stopping: loop {self.supervisor.failure} keeps failing (exit 1)")
        await self.supervisor.stop()
        await self._finish_runs()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.report(), 5)
        self.save()
        close = getattr(self.client, "close", None)  # the kept-alive connection
        if close is not None:
            close()
        log.info("stopped")
        return code

    async def _watchdog(self) -> None:
        """READY=1 once the control socket is up; WATCHDOG=1 while no loop is hung."""
        control = self.supervisor.handles["control"]
        while control.last_success is None:
            await asyncio.sleep(0.05)
        sdnotify.notify("READY=1\nSTATUS=polling " + self.config.server.url)
        period = sdnotify.watchdog_period()
        if period is None:
            return
        warned: list[str] = []
        while True:
            stalled = self.supervisor.stalled()
            if not stalled:
                sdnotify.notify("WATCHDOG=1")
            elif stalled != warned:  # once per change, not every period
                log.error("loop(s) %s made no progress for %gs: not feeding the systemd "
                          "watchdog, systemd will restart the agent", ", ".join(stalled),
                          self.supervisor.stall_limit)
            warned = stalled
            await asyncio.sleep(period)

    async def _finish_runs(self) -> None:
        if not self._tasks:
            return
        log.info("waiting up to %gs for %d running script(s)", self.config.limits.shutdown_grace,
                 len(self._tasks))
        _, pending = await asyncio.wait(self._tasks, timeout=self.config.limits.shutdown_grace)
        for task in pending:
            task.cancel()  # the executor kills the process group; the marker remains
        await asyncio.gather(*pending, return_exceptions=True)

    def _backoff(self, failures: int) -> float:
        limits = self.config.limits
        return next_delay(self.poll_interval(), failures, cap=limits.backoff_cap,
                          jitter=limits.poll_jitter, rand=random.random())  # noqa: S311

    async def _poll_loop(self, handle: LoopHandle) -> None:
        failures = 0
        self.poller.progress = handle.progress
        while True:
            await self._refresh_system_info()
            outcome = await self.poller.poll()
            self.runner.save_book()  # the last successful poll, for an offline `status`
            failures = 0 if outcome.ok else failures + 1
            if outcome.ok:
                handle.ok()
            else:
                log.warning("poll failed (%d in a row): %s", failures, outcome.message)
            for waiter in self._poll_waiters:
                if not waiter.done():
                    waiter.set_result(outcome)
            self._poll_waiters.clear()
            self._wake_scheduler.set()
            self._wake_reporter.set()
            await handle.sleep(self._backoff(failures), self._poll_now)

    async def _schedule_loop(self, handle: LoopHandle) -> None:
        while True:
            for decision in self.due():
                task = asyncio.create_task(self.runner.run(decision))
                self._tasks.add(task)
                task.add_done_callback(self._run_done)
            until = seconds_until_next(self.assignments(), self.memory(), now=time.time(),
                                       hostname=self.config.agent.hostname,
                                       jitter_cap=self.config.limits.interval_jitter_cap)
            handle.ok()
            wait = 60.0 if until is None else min(60.0, until)
            await handle.sleep(max(self.config.limits.tick, wait), self._wake_scheduler)

    def _run_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a run failed inside the agent", exc_info=task.exception())
        self._wake_scheduler.set()

    async def _report_loop(self, handle: LoopHandle) -> None:
        failures = 0
        self.reporter.progress = handle.progress
        while True:
            pending = self.executions.count() + self.events.count()
            if pending:
                failures = 0 if await self.report() else failures + 1
            if not failures:
                handle.ok()
            self.metrics.spool_pending = self.executions.count() + self.events.count()
            # A new result or a successful poll wakes the reporter early, so results
            # flow as soon as the server is back, without waiting out the back-off.
            await handle.sleep(self._backoff(failures) if failures else 60.0,
                               self._wake_reporter)

    async def refresh_config(self) -> None:
        """`GET /agent/config`: this node's groups (shown by `status`) and intervals."""
        try:
            remote = await self.client.get_config()
        except AgentClientError as exc:
            log.debug("config refresh failed: %s", exc)
            return
        with self.trusted.batch():
            self.trusted.set_groups(remote.groups)
            self.trusted.set_intervals(remote.poll_interval_seconds,
                                       remote.heartbeat_interval_seconds)

    async def _heartbeat_loop(self, handle: LoopHandle) -> None:
        beats = 0
        while True:
            if await self.heartbeat():
                handle.ok()
                if beats % 20 == 0:
                    await self.refresh_config()
            beats += 1
            interval = self.trusted.heartbeat_interval(self.config.agent.heartbeat_interval)
            await handle.sleep(interval)

    async def _control_loop(self, handle: LoopHandle) -> None:
        path = self.dir / SOCKET_NAME
        server = await serve_control(path, self._control)
        handle.ok()
        try:
            await handle.idle_forever()
        finally:
            server.close()
            path.unlink(missing_ok=True)

    async def _metrics_loop(self, handle: LoopHandle) -> None:
        listen = self.config.metrics.listen or ""
        try:
            server = await serve_metrics(listen, self.metrics_page)
        except OSError as exc:  # a port in use is a setting to fix, not a loop to restart
            log.error("cannot listen for /metrics on %s: %s", listen, exc)
            return
        handle.ok()
        try:
            await handle.idle_forever()
        finally:
            server.close()

    async def _control(self, command: str) -> dict[str, Any]:
        if command == "status":
            return {"ok": True, "status": self.status()}
        if command == "poll":
            waiter: asyncio.Future[PollOutcome] = asyncio.get_running_loop().create_future()
            self._poll_waiters.append(waiter)
            self._poll_now.set()
            try:
                outcome = await asyncio.wait_for(waiter, self.config.server.timeout * 3)
            except TimeoutError:
                return {"ok": False, "message": "the poll did not finish in time"}
            return {"ok": outcome.ok, "message": outcome.message}
        return {"ok": False, "message": f"unknown command {command!r}"}
