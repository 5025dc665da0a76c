"""Sign every catalog check into OUT/<name>.signed.json with the real `aami script sign`.

Run by `make catalog`. Each check folder holds check.py (or check.sh), schema.json and
manifest.json: {"name", "version", "script", "interpreter", "timeout", "run_as"}, where
run_as is "root" (the check needs root for its tool) or "runner" (any unprivileged
user: signed as --runner-user, aami-runner by default). OUT then holds only signed
files, the layout `aami bundle build --scripts OUT` takes.

Usage: python checks/build_catalog.py --key KEY --out DIR [--runner-user USER] [--aami PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

CHECKS = Path(__file__).resolve().parent
MANIFEST_KEYS = {"name", "version", "script", "interpreter", "timeout", "run_as"}
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class CatalogError(Exception):
    """A manifest or flag the catalog cannot be built from (one line, names the file)."""


def manifests() -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(CHECKS.glob("*/manifest.json")):
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
        raise CatalogError(f"{CHECKS}: no */manifest.json")
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


def build(key: str, out: Path, runner: str, aami: str) -> list[Path]:
    if not USER.fullmatch(runner):
        raise CatalogError(f"--runner-user: {runner!r} is not a user name")
    entries = manifests()
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
    parser.add_argument("--key", required=True, help="publisher private key")
    parser.add_argument("--out", required=True, help="directory for *.signed.json")
    parser.add_argument("--runner-user", default="aami-runner")
    parser.add_argument("--aami", default=shutil.which("aami") or "aami", help="aami CLI")
    args = parser.parse_args(argv)
    try:
        written = build(args.key, Path(args.out), args.runner_user, args.aami)
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"signed {len(written)} checks into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
