"""One due run, from decision to durable record: re-verify → mark → execute → spool.

1. Re-verify the cached bytes right before running (`cache.ScriptSource.load`): a key
   revoked, a statement expired or a cache file altered since the poll stops the run
   here. A refusal drops the assignment from the active set until the server changes
   its answer, and is reported once.
2. Record the schedule decision (last start, once-key, honoured force token) in the
   run book (`runbook.RunBook`, owned here) *before* starting, so a crash can never
   cause a second run of a once policy or a replayed force-run.
3. Write the running marker (execution id made now, before the run).
4. Execute under the concurrency limit.
5. Mask secrets in the output, write the finished record durably, drop the marker,
   update counters and script metrics, and wake the reporter.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aami.agent.cache import ReadyScript, ScriptRefused, ScriptSource
from aami.agent.client import AgentClientError
from aami.agent.config import AgentConfig
from aami.agent.executor import ExecutionRequest, ExecutionResult, execute, utc_now
from aami.agent.logging_setup import Masker
from aami.agent.metrics import AgentMetrics, record_script_output
from aami.agent.records import ExecutionReport
from aami.agent.runbook import RunBook, RunBookStore
from aami.agent.scheduler import RunDecision, ScheduleMemory
from aami.agent.spool import ExecutionSpool
from aami.agent.state import TrustedState

log = logging.getLogger("aami.agent.runner")


class Runner:
    def __init__(
        self,
        config: AgentConfig,
        trusted: TrustedState,
        book: RunBook,
        book_store: RunBookStore,
        source: ScriptSource,
        spool: ExecutionSpool,
        metrics: AgentMetrics,
        masker: Masker,
        *,
        on_refusal: Callable[[ScriptRefused, Any], None],
        on_result: Callable[[], None],
    ) -> None:
        self.config = config
        self.trusted = trusted
        self.book = book
        self.book_store = book_store
        self.source = source
        self.spool = spool
        self.metrics = metrics
        self.masker = masker
        self.on_refusal = on_refusal
        self.on_result = on_result
        self.slots = asyncio.Semaphore(config.executor.max_concurrent)
        self.running: dict[int, str] = {}  # policy id -> execution id

    def memory(self) -> ScheduleMemory:
        return self.book.memory(self.running)

    def save_book(self) -> None:
        self.book_store.save(self.book)

    def run_as_for(self, decision: RunDecision) -> str | None:
        return decision.assignment.run_as or self.config.executor.run_as

    async def run(self, decision: RunDecision) -> ExecutionReport | None:
        """Run one decision; returns the spooled record, or None if nothing ran."""
        a = decision.assignment
        self.running[a.policy_id] = ""
        try:
            async with self.slots:
                ready = await self._reverify(decision)
                if ready is None:
                    return None
                return await self._execute(decision, ready)
        finally:
            self.running.pop(a.policy_id, None)

    async def _reverify(self, decision: RunDecision) -> ReadyScript | None:
        a = decision.assignment
        try:
            return await self.source.load(
                a,
                self.trusted.highest_versions,
                now=datetime.now(UTC),
                run_as=self.run_as_for(decision),
            )
        except ScriptRefused as exc:
            self.on_refusal(exc, a)
            self.trusted.refuse_policy(a.policy_id)
            return None
        except AgentClientError as exc:
            log.warning("policy %s: script %s not cached and the server is unavailable (%s)",
                        a.policy_id, a.script.name, exc)
            return None

    async def _execute(self, decision: RunDecision, ready: ReadyScript) -> ExecutionReport:
        a, st = decision.assignment, ready.statement
        execution_id = str(uuid.uuid4())
        self.running[a.policy_id] = execution_id
        self.book.remember(decision, now=time.time(),
                           force_kept=self.config.limits.force_tokens_kept)
        self.save_book()
        skeleton = ExecutionReport(
            id=execution_id, policy_id=a.policy_id, script_name=st.name,
            script_version=st.version, script_hash=st.sha256, started_at=utc_now(),
            trigger=decision.trigger, force_token=decision.force_token,
        )
        self.spool.mark_running(skeleton)
        timeout = float(
            a.timeout_seconds or st.timeout_seconds or self.config.executor.default_timeout
        )
        log.info("running %s %s for policy %s (%s, execution %s)",
                 st.name, st.version, a.policy_id, decision.trigger, execution_id)
        self.metrics.executed += 1
        result = await execute(
            ExecutionRequest(
                execution_id=execution_id,
                script_name=st.name,
                script_version=st.version,
                content=ready.content,
                interpreter=st.interpreter,
                params=a.params,
                timeout=timeout,
                run_as=self.run_as_for(decision),
                target_id=self.trusted.target_id,
                hostname=self.config.agent.hostname,
            ),
            output_limit=self.config.executor.output_limit,
            kill_grace=self.config.limits.kill_grace,
            mask=self.masker.mask,  # before the output is cut to its limit
        )
        record = self._record(skeleton, result)
        self.spool.complete(record)
        self._count(st.name, result)
        self.on_result()
        return record

    def _record(self, skeleton: ExecutionReport, result: ExecutionResult) -> ExecutionReport:
        mask = self.masker.mask
        return replace(
            skeleton,
            started_at=result.started_at,
            finished_at=result.finished_at,
            duration_ms=result.duration_ms,
            exit_code=result.exit_code,
            success=result.success,
            stdout=result.stdout,  # masked by the executor, before the cut
            stderr=result.stderr,
            error_message=mask(result.error_message) if result.error_message else None,
        )

    def _count(self, script_name: str, result: ExecutionResult) -> None:
        self.book.count(result.success)
        if not result.success:
            self.metrics.failed += 1
        if result.timed_out:
            self.metrics.timeouts += 1
        self.save_book()
        level = logging.INFO if result.success else logging.WARNING
        log.log(level, "%s finished: exit %s in %d ms%s", script_name, result.exit_code,
                result.duration_ms, f" ({result.error_message})" if result.error_message else "")
        if result.success:
            record_script_output(self.metrics, script_name, result.stdout,
                                 self.config.metrics.textfile_dir)
