"""packaging/make-bundle.sh (`make bundle`): the release key from AAMI_RELEASE_KEY, or
a development key under build/ with a loud warning. `aami` here is the console script
standing in for dist/aami (tests/system builds bundles with the real binary); the
other binaries are stand-ins, since only their bytes travel."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.harness import run_cli
from tests.packaging.tools import REPO, require_tool

SCRIPT = REPO / "packaging" / "make-bundle.sh"


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "aami").write_text(f'#!/bin/sh\nexec {Path(sys.executable).parent / "aami"} "$@"\n')
    for name in ("aami-agent", "aami-server"):
        (dist / name).write_text(f"#!/bin/sh\necho {name}\n")
    for path in dist.iterdir():
        path.chmod(0o755)
    return dist


def _run(dist: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    require_tool("openssl")
    full = {k: v for k, v in os.environ.items() if not k.startswith("AAMI_")}
    full.update(DIST=str(dist), BUNDLE_OUT=str(out), **env)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=full,
                          timeout=120)


def test_release_key_from_the_environment(tmp_path: Path) -> None:
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "rk"), "--name", "release")
    result = _run(_dist(tmp_path), tmp_path / "out",
                  AAMI_RELEASE_KEY=str(tmp_path / "rk/release.key"), AAMI_BUNDLE_VERSION="3.4.5")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr
    bundle = tmp_path / "out/aami-bundle-3.4.5.tar.gz"
    verified = run_cli("aami", "bundle", "verify", str(bundle),
                       "--key", str(tmp_path / "rk/release.pub"))
    assert "files match the manifest" in verified.stdout
    assert (tmp_path / "out/release.pub").read_bytes() == (tmp_path / "rk/release.pub").read_bytes()
    from aami.trust.keys import key_id

    assert f"release key id: {key_id((tmp_path / 'rk/release.pub').read_bytes())}" in result.stdout
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
    assert {"aami-bundle-3.4.5/install.sh", "aami-bundle-3.4.5/bin/aami-agent",
            "aami-bundle-3.4.5/systemd/aami-server.service"} <= names


def test_without_a_release_key_a_development_key_and_a_loud_warning(tmp_path: Path) -> None:
    result = _run(_dist(tmp_path), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "WARNING: AAMI_RELEASE_KEY is not set" in result.stderr
    assert "build/dev-release-key/release.key" in result.stderr
    dev_pub = REPO / "build/dev-release-key/release.pub"
    assert (tmp_path / "out/release.pub").read_bytes() == dev_pub.read_bytes()


def test_bad_inputs_exit_2_naming_them(tmp_path: Path) -> None:
    missing = _run(tmp_path / "nowhere", tmp_path / "out")
    assert missing.returncode == 2 and "make binaries" in missing.stderr
    unreadable = _run(_dist(tmp_path), tmp_path / "out",
                      AAMI_RELEASE_KEY=str(tmp_path / "no.key"))
    assert unreadable.returncode == 2 and "AAMI_RELEASE_KEY" in unreadable.stderr
