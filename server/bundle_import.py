"""`aami-server import BUNDLE`: load a verified offline bundle's keys, signed scripts
and policies into the database, recorded as an `import` job with progress.

Order of work, and why:

1. The bundle is first copied into a private directory (0700), and that copy is
   verified completely against the release key the operator pins (`--key`, default
   `/etc/aami/release.pub`) and then extracted: a file swapped on the medium between
   the check and the use changes nothing (time-of-check to time-of-use). Only the
   files the signed manifest lists are imported; extraction refuses any other.
2. Its `trusted-keys/*.pub` are registered as publisher keys (an already registered
   key is left as it is), so that
3. each `scripts/*.signed.json` goes through the same upload path as
   `POST /api/v1/scripts` (signature, hash, expiry and version checks; an identical
   re-import is "unchanged", an older version "skipped"), and then
4. `policies/*.yaml` are applied like `aami policy apply`: created, replaced or
   left unchanged by name.

Every item is counted in the job's progress, readable meanwhile through
`GET /api/v1/jobs/{id}` on any server process sharing the database.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from aami.bundle.archive import extract, verify_archive
from aami.policyfile import PolicyFileError, parse_policy_file, plan
from aami.server.errors import ApiError, Conflict
from aami.server.models import Policy, PublisherKey
from aami.server.services import jobs, policies, publisher_keys, scripts
from aami.trust.keys import load_trusted_key

Progress = Callable[[str, int, int], None]


class BundleImportError(Exception):
    """The bundle's content could not be imported; str() names the file."""


@dataclass
class ImportResult:
    job_id: int
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1


def import_bundle(bundle: Path, release_public_pem: bytes,
                  progress: Progress | None = None) -> ImportResult:
    """Verify, then import. Runs synchronously against the bound database."""
    with tempfile.TemporaryDirectory(prefix="aami-import-") as tmp:
        private = Path(tmp) / "bundle.tar.gz"  # TemporaryDirectory is mode 0700
        shutil.copyfile(bundle, private)
        verified = verify_archive(private, release_public_pem, progress)
        root = extract(private, Path(tmp) / "tree", verified)
        keys = _listed(root, verified.entries, "trusted-keys/", (".pub",))
        signed = _listed(root, verified.entries, "scripts/", (".signed.json",))
        policy_files = _listed(root, verified.entries, "policies/", (".yaml", ".yml"))
        wanted = _read_policies(policy_files, root)
        total = len(keys) + len(signed) + len(wanted)
        result = ImportResult(jobs.create("import", total=total,
                                          detail={"bundle": bundle.name}))
        jobs.start(result.job_id)
        steps = [*(lambda k=k: _import_key(k, result) for k in keys),
                 *(lambda s=s: _import_script(s, result) for s in signed),
                 *(lambda p=p: _import_policy(p, result) for p in wanted)]
        try:
            for done, step in enumerate(steps, start=1):
                step()
                jobs.progress(result.job_id, done, detail={"bundle": bundle.name,
                                                           **result.counts})
                if progress:
                    progress("importing", done, total)
        except Exception as exc:
            jobs.finish(result.job_id, error=str(exc))
            raise
        jobs.finish(result.job_id, detail={"bundle": bundle.name, **result.counts,
                                           "problems": result.problems})
    return result


def _listed(root: Path, entries: dict[str, str], folder: str,
            suffixes: tuple[str, ...]) -> list[Path]:
    """The manifest's files directly in `folder` with one of `suffixes`, in order."""
    return [root / path for path in sorted(entries)
            if path.startswith(folder) and "/" not in path[len(folder):]
            and path.endswith(suffixes)]


def _read_policies(files: list[Path], root: Path) -> list[dict[str, Any]]:
    wanted: list[dict[str, Any]] = []
    for path in files:
        try:
            wanted += parse_policy_file(yaml.safe_load(path.read_text("utf-8")))
        except (yaml.YAMLError, PolicyFileError) as exc:
            raise BundleImportError(f"{path.relative_to(root)}: {exc}") from None
    return wanted


def _import_key(path: Path, result: ImportResult) -> None:
    key = load_trusted_key(path.read_bytes())
    if PublisherKey.select().where(PublisherKey.key_id == key.key_id).exists():
        result.count("keys_unchanged")
        return
    try:
        publisher_keys.create(path.stem, key.public_pem.decode("ascii"))
    except Conflict as exc:  # the name is taken by another key
        result.problems.append(f"trusted-keys/{path.name}: {exc.message}")
        result.count("keys_skipped")
        return
    result.count("keys_registered")


def _import_script(path: Path, result: ImportResult) -> None:
    try:
        _, created = scripts.upload(json.loads(path.read_bytes()), datetime.now(UTC))
    except ValueError as exc:
        raise BundleImportError(f"scripts/{path.name}: not JSON ({exc})") from None
    except ApiError as exc:
        # A script older than the stored one is not an error for a re-run import.
        result.problems.append(f"scripts/{path.name}: {exc.message} ({exc.code})")
        result.count("scripts_skipped")
        return
    result.count("scripts_stored" if created else "scripts_unchanged")


def _import_policy(policy: dict[str, Any], result: ImportResult) -> None:
    row = Policy.get_or_none(Policy.name == policy["name"])
    existing = {row.name: policies.to_wire(row)} if row else {}
    [change] = plan([policy], existing)
    try:
        if change.action == "create":
            policies.create(policy)
        elif change.action == "update":
            assert row is not None
            policies.replace(int(row.get_id()), policy)
    except ApiError as exc:
        result.problems.append(f"policy {policy['name']}: {exc.message} ({exc.code})")
        result.count("policies_skipped")
        return
    result.count(f"policies_{change.action}d" if change.action != "unchanged"
                 else "policies_unchanged")
