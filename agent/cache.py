"""Step 2 of a poll: get each assigned script's bytes and prove they may run.

Order, and what each check stops:

1. Bytes come from the local content-addressed cache (`state_dir/scripts/<sha256>`) or
   from `GET /agent/scripts/{sha256}`. A cached file whose hash no longer matches its
   name is deleted and fetched again (disk corruption, or someone editing the cache
   to slip code under a trusted hash).
2. `trust.verify.verify_script` checks content hash against the signed statement,
   signature by a pinned, unrevoked publisher key, expiry, rollback against the
   highest version this node accepted, parameters against the signed schema and the
   run_as user against the signed allow-list. This is the check that counts: the
   server is not trusted to create code.
   The statement's name must match the name the server claimed, and rollback is
   judged under the *signed* name (a server relabelling an old script).
3. Only then are the bytes cached, and the same verification runs again right before
   every execution (keys may have been revoked or the statement may have expired
   since the poll, and the cache file may have been altered).

Every refusal becomes a `ScriptRefused` with the trust package's reason code; the
caller logs it, counts it and reports it as a security event. Nothing refused runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aami.agent.atomicfile import atomic_write
from aami.agent.records import SecurityEvent
from aami.agent.wire import Assignment
from aami.trust.envelope import Envelope
from aami.trust.errors import Refusal
from aami.trust.keys import TrustedKey, load_trusted_key
from aami.trust.statement import ScriptStatement
from aami.trust.verify import verify_script

log = logging.getLogger("aami.agent.cache")


class ScriptRefused(Exception):
    """The agent will not run this script; `reason` is a stable snake_case code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ReadyScript:
    """A script that passed verification: what the executor may run, and how."""

    assignment: Assignment
    statement: ScriptStatement
    key_id: str
    content: bytes


class ScriptCache:
    """Content-addressed files; a file is only ever trusted if its name is its hash."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ScriptRefused("hash_mismatch", f"not a sha256 hex digest: {sha256[:80]!r}")
        return self.dir / sha256

    def get(self, sha256: str) -> bytes | None:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            log.warning("cached script %s does not match its hash; discarding it", sha256)
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, sha256: str, content: bytes) -> None:
        atomic_write(self._path(sha256), content, mode=0o600)

    def prune(self, keep: set[str]) -> None:
        for entry in self.dir.iterdir():
            if entry.name not in keep and not entry.name.startswith("."):
                entry.unlink(missing_ok=True)


def load_trusted_keys(keys_dir: str | os.PathLike[str]) -> dict[str, TrustedKey]:
    """Pinned publisher keys: `*.pub` are trusted; `*.pub.revoked` and `revoked/*.pub`
    are known but revoked (a revoked key must be refused loudly, not just unknown)."""
    base = Path(keys_dir)
    found: list[tuple[Path, bool]] = []
    if base.is_dir():
        found += [(p, False) for p in sorted(base.glob("*.pub"))]
        found += [(p, True) for p in sorted(base.glob("*.pub.revoked"))]
        found += [(p, True) for p in sorted(base.glob("revoked/*.pub"))]
    keys: dict[str, TrustedKey] = {}
    for path, revoked in found:
        name = path.name.split(".pub")[0]
        try:
            key = load_trusted_key(path.read_bytes(), name=name, revoked=revoked)
        except (OSError, Refusal, ValueError) as exc:
            log.error("trusted key %s cannot be loaded and is ignored: %s", path, exc)
            continue
        if revoked or key.key_id not in keys:
            keys[key.key_id] = key  # revoked wins over trusted for the same key
    if not any(not k.revoked for k in keys.values()):
        log.error("no trusted publisher keys in %s: every script will be refused", base)
    return keys


Stamp = tuple[tuple[str, int, str], ...]


class TrustedKeys:
    """Re-reads the keys when any key file changes, so adding or revoking a key takes
    effect without a restart. The stamp covers every key file's inode and content hash
    (key files are a few hundred bytes), not only the directories' mtimes: a key
    rewritten in place, or a new file renamed over it, may change no directory mtime,
    and a restored backup may even carry the old file's mtime."""

    def __init__(self, keys_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(keys_dir)
        self._stamp: Stamp | None = None
        self._keys: dict[str, TrustedKey] = {}

    def _fingerprint(self) -> Stamp:
        stamps: list[tuple[str, int, str]] = []
        paths: list[Path] = []
        if self.dir.is_dir():
            paths += sorted(self.dir.glob("*.pub")) + sorted(self.dir.glob("*.pub.revoked"))
            paths += sorted(self.dir.glob("revoked/*.pub"))
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    inode = os.fstat(handle.fileno()).st_ino
                    digest = hashlib.sha256(handle.read(1 << 20)).hexdigest()
            except OSError:
                inode, digest = -1, ""
            stamps.append((str(path), inode, digest))
        return tuple(stamps)

    def stamp(self) -> Stamp | None:
        """Changes whenever the key set may have changed (after `current()` re-read it)."""
        self.current()
        return self._stamp

    def current(self) -> Mapping[str, TrustedKey]:
        stamp = self._fingerprint()
        if stamp != self._stamp:
            self._keys = load_trusted_keys(self.dir)
            self._stamp = stamp
        return self._keys


def effective_user(run_as: str | None) -> str:
    """The user a script will run as: the policy's run_as, or the agent's own user.
    Always passed to verification, so a statement that restricts run_as is honoured
    even when the policy names no user (the agent may be root)."""
    if run_as:
        return run_as
    from aami.agent.executor import current_user

    return current_user()


def verify_assignment(
    assignment: Assignment,
    content: bytes,
    keys: Mapping[str, TrustedKey],
    highest_versions: Mapping[str, str],
    *,
    now: datetime,
    run_as: str | None,
) -> ReadyScript:
    """The pure gate: bytes + claim + pinned keys in, a `ReadyScript` or `ScriptRefused` out."""
    claimed = assignment.script
    try:
        verified = verify_script(
            Envelope.from_json(claimed.envelope),
            content,
            keys,
            now=now,
            # Looked up by the *signed* name, and the signed name must be the one the
            # server claimed: a relabelled old script cannot dodge rollback protection.
            highest_accepted_version=highest_versions,
            expected_name=claimed.name,
            params=assignment.params,
            run_as=run_as,
        )
    except Refusal as exc:
        raise ScriptRefused(exc.reason, exc.message) from exc
    statement = verified.statement
    return ReadyScript(assignment, statement, verified.key_id, verified.content)


class ScriptSource:
    """Fetch (cache first) then verify; used at poll time and again before each run."""

    def __init__(
        self,
        cache: ScriptCache,
        keys: TrustedKeys,
        fetch: Callable[[str], Any],
        *,
        max_bytes: int,
    ) -> None:
        self.cache = cache
        self.keys = keys
        self.fetch = fetch  # coroutine function: sha256 -> bytes (the client's get_script)
        self.max_bytes = max_bytes

    async def load(
        self,
        assignment: Assignment,
        highest_versions: Mapping[str, str],
        *,
        now: datetime,
        run_as: str | None,
    ) -> ReadyScript:
        sha = assignment.script.sha256
        content = self.cache.get(sha)
        cached = content is not None
        if content is None:
            content = await self.fetch(sha)
            if len(content) > self.max_bytes:
                raise ScriptRefused("content_too_large", f"script {sha} exceeds {self.max_bytes} B")
        ready = verify_assignment(
            assignment, content, self.keys.current(), highest_versions, now=now,
            run_as=effective_user(run_as),
        )
        if not cached:
            self.cache.put(sha, content)  # only verified bytes reach the cache
        return ready


def refusal_event(
    refused: ScriptRefused, assignment: Assignment | None, occurred_at: str
) -> SecurityEvent:
    """The security event for one refusal (id made here, once)."""
    ref = assignment.script if assignment else None
    return SecurityEvent(
        id=str(uuid.uuid4()),
        occurred_at=occurred_at,
        policy_id=assignment.policy_id if assignment else None,
        script_name=ref.name[:128] if ref else "",
        script_version=ref.version[:64] if ref else "",
        script_hash=ref.sha256[:64] if ref else "",
        reason=refused.reason,
        message=refused.message[:2000],
    )
