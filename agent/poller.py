"""Step 1 of the flow: ask the server what this node should run, and keep what verifies.

One poll:

1. make sure we hold an agent token (`registration`); a 401 INVALID_TOKEN on the poll
   means the server forgot us: re-register and poll again, once;
2. `GET /agent/assignments` with `If-None-Match` (304: nothing changed, cheap for a
   fleet of thousands); the ETag is dropped when the trusted keys change, so adding a
   key re-evaluates scripts refused earlier;
3. each assignment goes through `cache.ScriptSource` (fetch by hash, verify through
   `trust`, cache). Highest versions first, so rollback protection judges a pinned
   old version against the newest one in the same answer regardless of order;
4. only the assignments that verified replace the stored set (`TrustedState.accept`,
   one save, which also raises the rollback floor); refused ones are handed to
   `on_refusal` (log, metric, security event) and never run.

While the server fails, the wait between polls doubles up to `Limits.backoff_cap`;
every wait is jittered so a fleet does not synchronise after an outage. The server's
intervals (registration, heartbeat and config answers) replace the configured one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aami.agent.cache import ScriptRefused, ScriptSource
from aami.agent.client import AgentClient, AgentClientError, NotFound, ServerUnavailable
from aami.agent.metrics import AgentMetrics
from aami.agent.registration import NotRegistered, Registrar
from aami.agent.runbook import RunBook
from aami.agent.state import TrustedState
from aami.agent.wire import Assignment, AssignmentSet
from aami.trust.statement import parse_version

log = logging.getLogger("aami.agent.poller")


def next_delay(base: float, failures: int, *, cap: float, jitter: float, rand: float) -> float:
    """Seconds to the next poll: `base` when healthy, doubling per failure up to `cap`;
    `rand` in [0, 1) spreads it by +-`jitter` (a fraction)."""
    delay = base if failures <= 0 else min(cap, base * 2 ** min(failures, 20))
    return max(0.5, min(cap, delay) * (1 + jitter * (2 * rand - 1)))


def _version_key(a: Assignment) -> tuple[int, int, int]:
    try:
        return parse_version(a.script.version)
    except Exception:
        return (-1, -1, -1)  # malformed claims go last; verification refuses them


@dataclass(frozen=True)
class PollOutcome:
    ok: bool
    changed: bool
    message: str
    accepted: int = 0
    refused: int = 0


class Poller:
    def __init__(
        self,
        client: AgentClient,
        registrar: Registrar,
        source: ScriptSource,
        trusted: TrustedState,
        book: RunBook,
        metrics: AgentMetrics,
        *,
        default_run_as: str | None,
        on_refusal: Callable[[ScriptRefused, Assignment], None],
    ) -> None:
        self.client = client
        self.registrar = registrar
        self.source = source
        self.trusted = trusted
        self.book = book
        self.metrics = metrics
        self.default_run_as = default_run_as
        self.on_refusal = on_refusal
        self._keys_seen: object = None
        self.progress: Callable[[], None] = lambda: None  # the poll loop's watchdog

    async def poll(self) -> PollOutcome:
        """One poll; never raises for server or network trouble (the outcome says)."""
        started = time.monotonic()
        try:
            outcome = await self._poll_once()
        except NotRegistered as exc:
            outcome = PollOutcome(False, False, str(exc))
        except ServerUnavailable as exc:
            outcome = PollOutcome(False, False, f"server unavailable: {exc}")
        except AgentClientError as exc:  # an answer, but a wrong one (or a refusal)
            outcome = PollOutcome(False, False, f"bad answer from the server: {exc}")
        self.metrics.observe_poll(time.monotonic() - started, outcome.ok)
        if outcome.ok:
            self.book.last_successful_poll = time.time()
        return outcome

    async def _poll_once(self) -> PollOutcome:
        keys_stamp = self.source.keys.stamp()

        async def fetch() -> AssignmentSet | None:
            # The ETag is read per attempt: a re-registration forgets it.
            etag = self.trusted.etag if keys_stamp == self._keys_seen else None
            return await self.client.get_assignments(etag)

        answer = await self.registrar.call(fetch, retry=True)
        self._keys_seen = keys_stamp
        if answer is None:
            return PollOutcome(True, False, "assignments unchanged")
        return await self._accept(answer)

    async def _accept(self, answer: AssignmentSet) -> PollOutcome:
        now = datetime.now(UTC)  # one clock reading for the whole answer
        accepted: list[tuple[Assignment, dict[str, Any], str]] = []
        floor = dict(self.trusted.highest_versions)  # raised as this answer verifies
        refused = 0
        pairs = sorted(zip(answer.assignments, answer.raw, strict=True),
                       key=lambda p: _version_key(p[0]), reverse=True)
        for assignment, raw in pairs:
            self.progress()  # one script fetch per step: a long answer is not a hang
            try:
                ready = await self.source.load(
                    assignment,
                    floor,
                    now=now,
                    run_as=assignment.run_as or self.default_run_as,
                )
            except ScriptRefused as exc:
                refused += 1
                self.on_refusal(exc, assignment)
                continue
            except NotFound:
                # Not a trust refusal: the server assigned content it cannot serve.
                refused += 1
                log.error("policy %s: the server has no content for script %s (%s)",
                          assignment.policy_id, assignment.script.name, assignment.script.sha256)
                continue
            name, version = ready.statement.name, ready.statement.version
            if name not in floor or parse_version(version) > parse_version(floor[name]):
                floor[name] = version
            accepted.append((assignment, dict(raw), version))
        self.trusted.accept(answer.etag, accepted)
        self.source.cache.prune({a.script.sha256 for a, _, _ in accepted})
        msg = f"{len(accepted)} assignments verified, {refused} refused"
        log.info("assignments changed (etag %s): %s", answer.etag, msg)
        return PollOutcome(True, True, msg, accepted=len(accepted), refused=refused)
