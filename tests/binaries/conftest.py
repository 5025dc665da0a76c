"""The built binaries (`make binaries`), shared by the tests of this folder.

Building takes a few minutes the first time; make rebuilds only what changed, so a
second run reuses dist/. Without the build tools the tests are skipped on a
developer machine and fail under CI (CI=true): a green CI run means they really ran.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import require
from tests.packaging.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"


@dataclass(frozen=True)
class Binaries:
    agent: Path
    agent_static: Path
    server: Path
    cli: Path
    summary: str  # the build's one-line-per-binary summary (sizes, start-up times)


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    require(Path("/usr/bin/python3.11").exists(),
            "Debian's /usr/bin/python3.11 is needed to build the binaries")
    require_tool("patchelf")
    started = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "binaries"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    elapsed = time.monotonic() - started
    print(f"\nmake binaries: {elapsed:.0f}s\n{result.stdout}")
    found = Binaries(DIST / "aami-agent", DIST / "aami-agent-static", DIST / "aami-server",
                     DIST / "aami", result.stdout)
    for path in (found.agent, found.agent_static, found.server, found.cli):
        assert path.is_file() and os.access(path, os.X_OK), f"{path} was not built"
    return found
