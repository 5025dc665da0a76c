"""Lay out the `aami` package as it is installed, for tools that read source trees.

The repository keeps one top-level folder per component (agent/, server/, ...) and
pyproject.toml maps them to `aami.agent`, `aami.server`, ... at install time. pip's
editable install does that mapping with an import hook, which neither mypy nor
PyInstaller's analysis follows; they read this tree of symlinks instead:

    build/package-root/aami/agent -> ../../../agent   (and so on)

    python packaging/package_root.py [DIR]     (default build/package-root; prints DIR)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("agent", "server", "trust", "bundle", "cli", "policyfile", "units")
DEFAULT = ROOT / "build" / "package-root"


def make_package_root(directory: Path = DEFAULT) -> Path:
    """Create (or repair) DIR/aami/<component> symlinks; returns DIR."""
    package = directory / "aami"
    package.mkdir(parents=True, exist_ok=True)
    for component in COMPONENTS:
        link = package / component
        target = os.path.relpath(ROOT / component, package)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return directory


if __name__ == "__main__":
    print(make_package_root(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
