"""Per-process caches for the Agent API, and how they stay correct across processes.

What one process keeps in memory:

* one `Snapshot` (all policies, groups, script metadata) for the configuration
  revision it last saw;
* one `TargetView` per target that polled (its groups, intervals, the serialised
  assignments body and its ETag, the hashes and policy ids it may use);
* script content by SHA-256 (immutable by construction), bounded in bytes.

How it stays consistent when several processes share one database: every
transaction that can change assignments bumps `ConfigRevision` (see
`server.services.revision`). `watch()` reads the counter about once a second; a new
value drops the snapshot and every view. Force-run requests add `ForceRunTarget`
rows; the same tick reads rows newer than the last seen id and drops only the views
of those targets. So a change made through any process reaches agents polling any
other within about one watcher period. The same query reads the credentials
revision and hands it to the authenticator, which drops its resolved tokens when a
token was revoked anywhere. A view also expires after `VIEW_TTL_SECONDS`
as a safety net (e.g. a force-run marked done through another process).

In the common case (nothing changed) a poll is answered from the view: no query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from aami.server.db import Database, tuples
from aami.server.models import ForceRunTarget
from aami.server.services import assignments, revision
from aami.server.services.assignments import Snapshot, TargetView
from aami.server.timefmt import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheLimits:
    watch_seconds: float = 1.0
    view_ttl_seconds: float = 300.0
    max_views: int = 200_000
    content_cache_bytes: int = 64 * 1024 * 1024


def _changes_since(last_force_row: int) -> tuple[tuple[int, int], int, list[int]]:
    """((configuration, credentials) revisions, newest ForceRunTarget id, targets with
    new force-run rows)."""
    rev = revision.both()
    rows = tuples(ForceRunTarget.select(ForceRunTarget.id, ForceRunTarget.target)
                  .where(ForceRunTarget.id > last_force_row)
                  .order_by(ForceRunTarget.id).limit(100_000))
    newest = rows[-1][0] if rows else last_force_row
    return rev, newest, sorted({target for _, target in rows})


def _newest_force_row() -> int:
    row = ForceRunTarget.select(ForceRunTarget.id).order_by(ForceRunTarget.id.desc()).first()
    return row.id if row else 0


class AgentCache:
    def __init__(self, database: Database, *, default_poll: int, default_heartbeat: int,
                 limits: CacheLimits | None = None,
                 on_credentials: Callable[[int], None] | None = None) -> None:
        self._db = database
        # Told the credentials revision on every tick (the authenticator's cache).
        self._on_credentials = on_credentials
        self._default_poll = default_poll
        self._default_heartbeat = default_heartbeat
        self.limits = limits or CacheLimits()
        self.revision: int | None = None
        self._snapshot: Snapshot | None = None
        self._snapshot_loading: asyncio.Future[Snapshot] | None = None
        self._views: dict[int, tuple[float, TargetView]] = {}
        self._last_force_row = 0
        # A view built while its target (or everything) was invalidated is not kept:
        # it may predate the change. Counted globally and per target.
        self._epoch = 0
        self._target_epochs: dict[int, int] = {}
        self._content: OrderedDict[str, bytes] = OrderedDict()
        self._content_bytes = 0
        self.hits = 0
        self.misses = 0

    # -- invalidation -------------------------------------------------------------

    async def start(self) -> None:
        self._last_force_row = await self._db.run(_newest_force_row)
        self.revision, credentials = await self._db.run(revision.both)
        if self._on_credentials is not None:
            self._on_credentials(credentials)

    async def watch_once(self) -> None:
        (rev, credentials), newest, targets = await self._db.run(
            _changes_since, self._last_force_row)
        self._last_force_row = newest
        if self._on_credentials is not None:
            self._on_credentials(credentials)
        if rev != self.revision:
            log.debug("configuration revision %s -> %s: dropping caches", self.revision, rev)
            self.revision = rev
            self.drop_all()
        for target_id in targets:
            self.invalidate(target_id)

    async def watch(self) -> None:
        while True:
            try:
                await self.watch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep watching through database outages
                log.warning("revision watcher: %s", exc)
            await asyncio.sleep(self.limits.watch_seconds)

    def drop_all(self) -> None:
        self._epoch += 1
        self._target_epochs.clear()
        self._snapshot = None
        self._views.clear()

    def invalidate(self, target_id: int) -> None:
        self._target_epochs[target_id] = self._target_epochs.get(target_id, 0) + 1
        self._views.pop(target_id, None)

    # -- views ----------------------------------------------------------------------

    async def view(self, target_id: int, hostname: str) -> TargetView:
        entry = self._views.get(target_id)
        now = time.monotonic()
        if (entry is not None and entry[0] > now and entry[1].revision == self.revision
                and (entry[1].expires_at is None or entry[1].expires_at > utcnow())):
            self.hits += 1
            return entry[1]
        self.misses += 1
        epoch = (self._epoch, self._target_epochs.get(target_id, 0))
        snapshot = await self._current_snapshot()
        state = await self._db.run(assignments.load_target_state, target_id)
        view = assignments.build_view(snapshot, target_id, hostname, state,
                                      default_poll=self._default_poll,
                                      default_heartbeat=self._default_heartbeat)
        current = (self._epoch, self._target_epochs.get(target_id, 0))
        if epoch == current and view.revision == self.revision:
            if len(self._views) >= self.limits.max_views:
                self._views.clear()
            self._views[target_id] = (now + self.limits.view_ttl_seconds, view)
        return view

    async def seed_new(self, target_id: int, hostname: str, group_ids: tuple[int, ...]
                       ) -> TargetView:
        """The view of a target registered just now: no rows of its own to read yet
        (a force-run aimed at it since is caught by the watcher like any other)."""
        epoch = self._epoch
        snapshot = await self._current_snapshot()
        view = assignments.build_view(snapshot, target_id, hostname,
                                      assignments.TargetState(tuple(sorted(group_ids))),
                                      default_poll=self._default_poll,
                                      default_heartbeat=self._default_heartbeat)
        if epoch == self._epoch and view.revision == self.revision:
            self._views[target_id] = (time.monotonic() + self.limits.view_ttl_seconds, view)
        return view

    async def _current_snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.revision == self.revision:
            return snapshot
        # One load at a time: after a change thousands of polls miss together.
        if self._snapshot_loading is None:
            self._snapshot_loading = asyncio.ensure_future(self._load_snapshot())
        loading = self._snapshot_loading
        return await asyncio.shield(loading)

    async def _load_snapshot(self) -> Snapshot:
        try:
            snapshot = await self._db.run(assignments.load_snapshot)
            if self.revision is None or snapshot.revision >= self.revision:
                self.revision = snapshot.revision
                self._snapshot = snapshot
            return snapshot
        finally:
            self._snapshot_loading = None

    # -- script content -----------------------------------------------------------------

    async def script_content(self, sha256: str) -> bytes | None:
        content = self._content.get(sha256)
        if content is not None:
            self._content.move_to_end(sha256)
            return content
        content = await self._db.run(assignments.load_script_content, sha256)
        if content is not None and len(content) <= self.limits.content_cache_bytes // 4:
            self._content[sha256] = content
            self._content_bytes += len(content)
            while self._content_bytes > self.limits.content_cache_bytes:
                _, dropped = self._content.popitem(last=False)
                self._content_bytes -= len(dropped)
        return content




class Gate:
    """A semaphore that knows how many callers wait on it (for load shedding)."""

    def __init__(self, slots: int) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self.waiting = 0

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


