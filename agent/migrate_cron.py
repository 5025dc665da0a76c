"""`aami-agent migrate-cron`: switch a node from the old cron/timer runner to the agent.

Disables, without deleting anything:
- every `<root>/etc/cron.d/aami-*` file, renamed to `aami-*.disabled-by-aami-agent`
  (cron ignores file names containing a dot, so the rename is enough);
- the `aami-dynamic-check.timer` systemd timer: on the real root with systemctl,
  `systemctl disable --now`; and in any case the enablement symlink under
  `<root>/etc/systemd/system/timers.target.wants/` is moved aside.

Everything done is recorded in `<state_dir>/migrate-cron.json`; `--rollback` undoes
exactly that list and nothing else. Running it twice is harmless.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aami.agent.atomicfile import atomic_write

SUFFIX = ".disabled-by-aami-agent"
TIMER = "aami-dynamic-check.timer"
MANIFEST = "migrate-cron.json"


class MigrationError(Exception):
    """The migration (or its rollback) could not be completed."""


@dataclass
class Manifest:
    renamed: list[list[str]] = field(default_factory=list)  # [original, disabled]
    timer_disabled: bool = False


def _manifest_path(state_dir: Path) -> Path:
    return state_dir / MANIFEST


def _load(state_dir: Path) -> Manifest:
    try:
        data = json.loads(_manifest_path(state_dir).read_text())
    except FileNotFoundError:
        return Manifest()
    except ValueError as exc:
        raise MigrationError(f"{_manifest_path(state_dir)}: unreadable manifest") from exc
    return Manifest(
        renamed=data.get("renamed", []), timer_disabled=data.get("timer_disabled", False)
    )


def _save(state_dir: Path, manifest: Manifest) -> None:
    body = {"renamed": manifest.renamed, "timer_disabled": manifest.timer_disabled}
    atomic_write(_manifest_path(state_dir), json.dumps(body, indent=1).encode())


def _systemctl(root: Path, *args: str) -> bool:
    if str(root) != "/" or not shutil.which("systemctl"):
        return False
    proc = subprocess.run(["systemctl", *args, TIMER], capture_output=True, text=True, check=False)
    return proc.returncode == 0


def migrate(root: Path, state_dir: Path) -> list[str]:
    """Disable the old runners; returns human-readable lines of what was done."""
    state_dir.mkdir(parents=True, exist_ok=True)
    manifest = _load(state_dir)
    done: list[str] = []
    cron_dir = root / "etc" / "cron.d"
    for path in sorted(cron_dir.glob("aami-*")) if cron_dir.is_dir() else []:
        if path.name.endswith(SUFFIX) or not path.is_file():
            continue
        disabled = path.with_name(path.name + SUFFIX)
        os.replace(path, disabled)
        manifest.renamed.append([str(path), str(disabled)])
        done.append(f"disabled cron file {path}")
    wants = root / "etc" / "systemd" / "system" / "timers.target.wants" / TIMER
    if wants.is_symlink() or wants.exists():
        disabled = wants.with_name(wants.name + SUFFIX)
        os.replace(wants, disabled)
        manifest.renamed.append([str(wants), str(disabled)])
        manifest.timer_disabled = True
        done.append(f"disabled timer link {wants}")
    if _systemctl(root, "disable", "--now"):
        manifest.timer_disabled = True
        done.append(f"systemctl disable --now {TIMER}")
    _save(state_dir, manifest)
    return done


def rollback(root: Path, state_dir: Path) -> list[str]:
    """Restore exactly what `migrate` recorded."""
    manifest = _load(state_dir)
    done: list[str] = []
    for original, disabled in reversed(manifest.renamed):
        src, dst = Path(disabled), Path(original)
        if dst.exists() or dst.is_symlink():
            raise MigrationError(f"{dst} exists again; not overwriting it")
        if not (src.exists() or src.is_symlink()):
            raise MigrationError(f"{src} is missing; cannot restore {dst}")
        os.replace(src, dst)
        done.append(f"restored {dst}")
    if manifest.timer_disabled and _systemctl(root, "enable", "--now"):
        done.append(f"systemctl enable --now {TIMER}")
    _manifest_path(state_dir).unlink(missing_ok=True)
    return done
