"""One due run, from decision to durable record: re-verify → mark → execute → spool.

1. Re-verify the cached bytes right before running (`cache.ScriptSource.load`): a key
   revoked, a statement expired or a cache file altered since the poll stops the run
   here. A refusal drops the assignment from the active set until the server changes
   its answer, and is reported once.
2. Record the schedule decision (last start, once-key, honoured force token) in the
   state file *before* starting, so a crash can never cause a second run of a once
   policy or a replayed force-run.
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
from datetime import UTC, datetime
from typing import Any

from aami.agent.cache import ReadyScript, ScriptRefused, ScriptSource
from aami.agent.client import AgentClientError
from aami.agent.config import AgentConfig
from aami.agent.executor import ExecutionRequest, ExecutionResult, execute, utc_now
from aami.agent.logging_setup import Masker
from aami.agent.metrics import AgentMetrics, record_script_output
from aami.agent.scheduler import RunDecision, once_key
from aami.agent.spool import ExecutionSpool
from aami.agent.state import AgentState, StateStore

log = logging.getLogger("aami.agent.runner")


class Runner:
    def __init__(
        self,
        config: AgentConfig,
        state: AgentState,
        store: StateStore,
        source: ScriptSource,
        spool: ExecutionSpool,
        metrics: AgentMetrics,
        masker: Masker,
        *,
        on_refusal: Callable[[ScriptRefused, Any], None],
        on_result: Callable[[], None],
    ) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.source = source
        self.spool = spool
        self.metrics = metrics
        self.masker = masker
        self.on_refusal = on_refusal
        self.on_result = on_result
        self.slots = asyncio.Semaphore(config.executor.max_concurrent)
        self.running: dict[int, str] = {}  # policy id -> execution id

    def run_as_for(self, decision: RunDecision) -> str | None:
        return decision.assignment.run_as or self.config.executor.run_as

    async def run(self, decision: RunDecision) -> dict[str, Any] | None:
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
                self.state.highest_versions,
                now=datetime.now(UTC),
                run_as=self.run_as_for(decision),
            )
        except ScriptRefused as exc:
            self.on_refusal(exc, a)
            # Out of the active set until the server's answer changes.
            self.state.assignments = [
                raw for raw in self.state.assignments if raw.get("policy_id") != a.policy_id
            ]
            self.store.save(self.state)
            return None
        except AgentClientError as exc:
            log.warning("policy %s: script %s not cached and the server is unavailable (%s)",
                        a.policy_id, a.script.name, exc)
            return None

    def _remember_decision(self, decision: RunDecision) -> None:
        a, key = decision.assignment, str(decision.assignment.policy_id)
        if decision.trigger == "force" and a.force_token:
            self.state.remember_force(a.force_token, self.config.limits.force_tokens_kept)
        elif decision.trigger == "once":
            self.state.once_done[key] = once_key(a.script.sha256, a.params)
        else:
            self.state.last_runs[key] = time.time()
        self.store.save(self.state)

    async def _execute(self, decision: RunDecision, ready: ReadyScript) -> dict[str, Any]:
        a, st = decision.assignment, ready.statement
        execution_id = str(uuid.uuid4())
        self.running[a.policy_id] = execution_id
        self._remember_decision(decision)
        skeleton = {
            "id": execution_id,
            "policy_id": a.policy_id,
            "script_name": st.name,
            "script_version": st.version,
            "script_hash": st.sha256,
            "started_at": utc_now(),
            "trigger": decision.trigger,
            "force_token": decision.force_token,
        }
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
                target_id=self.state.target_id,
                hostname=self.config.agent.hostname,
            ),
            output_limit=self.config.executor.output_limit,
            kill_grace=self.config.limits.kill_grace,
        )
        record = self._record(skeleton, result)
        self.spool.complete(record)
        self._count(st.name, result)
        self.on_result()
        return record

    def _record(self, skeleton: dict[str, Any], result: ExecutionResult) -> dict[str, Any]:
        mask = self.masker.mask
        return {
            **skeleton,
            "started_at": result.started_at,
            "finished_at": result.finished_at,
            "duration_ms": result.duration_ms,
            "exit_code": result.exit_code,
            "success": result.success,
            "stdout": mask(result.stdout),
            "stderr": mask(result.stderr),
            "error_message": mask(result.error_message) if result.error_message else None,
        }

    def _count(self, script_name: str, result: ExecutionResult) -> None:
        self.state.scripts_total += 1
        if result.success:
            self.state.scripts_success += 1
        else:
            self.state.scripts_failed += 1
            self.metrics.failed += 1
        if result.timed_out:
            self.metrics.timeouts += 1
        self.store.save(self.state)
        level = logging.INFO if result.success else logging.WARNING
        log.log(level, "%s finished: exit %s in %d ms%s", script_name, result.exit_code,
                result.duration_ms, f" ({result.error_message})" if result.error_message else "")
        if result.success:
            record_script_output(self.metrics, script_name, result.stdout,
                                 self.config.metrics.textfile_dir)
