"""Shared helpers for the packaging tests: the repository root and the tools they drive.

These tests run real system tools (systemd-analyze, nix, openssl, sha256sum).
On a developer machine without one of them the test is skipped; under CI
(CI=true) a missing tool is a failure, so a green CI run means they really ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.harness import require

REPO = Path(__file__).resolve().parents[2]


def require_tool(name: str) -> str:
    """The absolute path of `name`, or skip (fail under CI) when it is missing."""
    path = shutil.which(name)
    require(path is not None,
            f"{name} is not installed (scripts/install-system-deps.sh installs it)")
    assert path is not None
    return path

