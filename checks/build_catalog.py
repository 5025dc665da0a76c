"""Sign every catalog check into OUT/<name>.signed.json with the real `aami script sign`.

Run by `make catalog`. Each check folder holds check.py (or check.sh), schema.json and
manifest.json: {"name", "version", "script", "interpreter", "timeout", "run_as"}, where
run_as is "root" (the check needs root for its tool) or "runner" (any unprivileged
user: signed as --runner-user, aami-runner by default). OUT then holds only signed
files, the layout `aami bundle build --scripts OUT` takes.

Every check carries a copy of checks/shared_helpers.py (a signed script is one file);
a check whose copy differs is refused. `--sync-helpers` rewrites the copies.

Usage: python checks/build_catalog.py --key KEY --out DIR [--runner-user USER] [--aami PATH]
       python checks/build_catalog.py --sync-helpers
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

CHECKS = Path(__file__).resolve().parent
MANIFEST_KEYS = {"name", "version", "script", "interpreter", "timeout", "run_as"}
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HELPERS_START = "# " + "-" * 65 + " shared helpers\n"
HELPERS_END = "# " + "-" * 71 + " the check\n"


class CatalogError(Exception):
    """A manifest or flag the catalog cannot be built from (one line, names the file)."""


def shared_helpers(checks: Path = CHECKS) -> str:
    """The block every Python check carries, as it must read between the markers."""
    text = (checks / "shared_helpers.py").read_text()
    return HELPERS_START + text.split(HELPERS_START, 1)[1].rstrip("\n") + "\n\n\n"


def _split(script: Path) -> tuple[str, str, str]:
    """(before, helpers block, after) of a check's source."""
    text = script.read_text()
    start, end = text.find(HELPERS_START), text.find(HELPERS_END)
    if start < 0 or end < start:
        raise CatalogError(f"{script}: no shared helpers block between the marker lines "
                           "(copy them from checks/shared_helpers.py)")
    return text[:start], text[start:end], text[end:]


def drifted(checks: Path = CHECKS) -> list[Path]:
    """Python checks whose copy of the shared helpers differs from the source."""
    wanted = shared_helpers(checks)
    return [script for script in sorted(checks.glob("*/check.py"))
            if _split(script)[1] != wanted]


def sync_helpers(checks: Path = CHECKS) -> list[Path]:
    """Copy shared_helpers.py into every check that differs (write, fsync, rename)."""
    wanted = shared_helpers(checks)
    changed = drifted(checks)
    for script in changed:
        before, _, after = _split(script)
        temporary = script.with_name(f".{script.name}.tmp")
        with open(temporary, "w") as out:
            out.write(before + wanted + after)
            out.flush()
            os.fsync(out.fileno())
        temporary.chmod(script.stat().st_mode)
        temporary.replace(script)
    return changed


def manifests(checks: Path = CHECKS) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(checks.glob("*/manifest.json")):
        try:
            manifest = json.loads(path.read_text())
        except ValueError as exc:
            raise CatalogError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or set(manifest) != MANIFEST_KEYS:
            raise CatalogError(f"{path}: must have exactly the keys {sorted(MANIFEST_KEYS)}")
        if manifest["name"] != path.parent.name:
            raise CatalogError(f"{path}: name {manifest['name']!r} is not the folder's name")
        if manifest["run_as"] not in ("root", "runner"):
            raise CatalogError(f"{path}: run_as must be \"root\" or \"runner\"")
        found.append((path.parent, manifest))
    if not found:
        raise CatalogError(f"{checks}: no */manifest.json")
    return found


def sign_command(aami: str, folder: Path, manifest: dict, key: str, out: Path,
                 runner: str) -> list[str]:
    user = "root" if manifest["run_as"] == "root" else runner
    return [
        aami, "script", "sign", str(folder / manifest["script"]), "--key", key,
        "--name", manifest["name"], "--version", manifest["version"],
        "--interpreter", manifest["interpreter"], "--timeout", manifest["timeout"],
        "--params-schema", str(folder / "schema.json"), "--run-as", user,
        "--out", str(out / f"{manifest['name']}.signed.json"),
    ]


def build(key: str, out: Path, runner: str, aami: str, checks: Path = CHECKS) -> list[Path]:
    if not USER.fullmatch(runner):
        raise CatalogError(f"--runner-user: {runner!r} is not a user name")
    entries = manifests(checks)
    stale_copies = drifted(checks)
    if stale_copies:
        raise CatalogError(
            f"{stale_copies[0].relative_to(checks)}: its shared helpers differ from "
            "checks/shared_helpers.py; run python checks/build_catalog.py --sync-helpers")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.signed.json"):
        stale.unlink()  # a check removed from the catalog must not ship from an old build
    written = []
    for folder, manifest in entries:
        done = subprocess.run(sign_command(aami, folder, manifest, key, out, runner),
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CatalogError(f"{folder.name}: {done.stderr.strip() or done.stdout.strip()}")
        written.append(out / f"{manifest['name']}.signed.json")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", help="publisher private key")
    parser.add_argument("--out", help="directory for *.signed.json")
    parser.add_argument("--runner-user", default="aami-runner")
    parser.add_argument("--aami", default=shutil.which("aami") or "aami", help="aami CLI")
    parser.add_argument("--sync-helpers", action="store_true",
                        help="copy checks/shared_helpers.py into every check, sign nothing")
    args = parser.parse_args(argv)
    if args.sync_helpers:
        try:
            changed = sync_helpers()
        except CatalogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"updated {len(changed)} checks" + "".join(f"\n  {p}" for p in changed))
        return 0
    if not args.key or not args.out:
        parser.error("--key and --out are required (or --sync-helpers)")
    try:
        written = build(args.key, Path(args.out), args.runner_user, args.aami)
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"signed {len(written)} checks into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
