"""Session fixtures of the real-systemd tier: the cached Debian root, the binaries,
two signed bundles built with `make bundle`, a site CA and a publisher key.

These tests need root, systemd-nspawn and debootstrap (scripts/install-system-deps.sh)
and network access to the Debian mirror the first time the root is built. Without
them they skip on a developer machine and fail under CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import require
from tests.system.nspawn import prepare_base
from tests.system.site import Release

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/system/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)
            # The first one also builds the Debian root (~1.5 min) and, on a fresh
            # checkout, the binaries (up to ~4 min): more than the suite's 300 s default.
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(scope="session")
def base_root() -> Path:
    require(os.geteuid() == 0, "the system tests boot containers: run them as root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "openssl"):
        require(shutil.which(tool) is not None,
                f"{tool} is missing (scripts/install-system-deps.sh installs it)")
    started = time.monotonic()
    base = prepare_base()
    print(f"\nDebian root ready in {time.monotonic() - started:.1f}s: {base}")
    return base


@pytest.fixture(scope="session")
def release(base_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Release:
    require(Path("/usr/bin/python3.11").exists(),
            "Debian's /usr/bin/python3.11 is needed to build the binaries")
    work = tmp_path_factory.mktemp("release")
    started = time.monotonic()
    built = subprocess.run(["make", "--no-print-directory", "binaries"], cwd=REPO,
                           capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    print(f"make binaries: {time.monotonic() - started:.0f}s")
    return Release.build(work)
