"""`aami bundle build` and `verify` as a user runs them, and the bundle they make
installed by the real `packaging/install.sh` into a DESTDIR (builder and installer
agree on the format)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from tests.harness import run_cli

ROOT = Path(__file__).resolve().parents[2]


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("aami-agent", "aami-server", "aami"):
        (dist / name).write_text(f"#!/bin/sh\necho '{name} 9.9.9'\n")
    return dist


def test_build_verify_install(tmp_path: Path) -> None:
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "keys"), "--name", "release")
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "pub"), "--name", "ops")
    (tmp_path / "pub" / "ops.key").unlink()
    out = tmp_path / "aami.tar.gz"
    built = run_cli("aami", "bundle", "build", "--key", str(tmp_path / "keys/release.key"),
                    "--out", str(out), "--dist", str(_dist(tmp_path)), "--version", "9.9.9",
                    "--trusted-keys", str(tmp_path / "pub"))
    assert built.stdout.startswith(f"built {out}: ") and "\r" not in built.stdout + built.stderr
    verified = run_cli("aami", "bundle", "verify", str(out), "--key",
                       str(tmp_path / "keys/release.pub"))
    assert "files match the manifest" in verified.stdout

    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "usb", filter="data")
    bundle_dir = tmp_path / "usb" / "aami-bundle-9.9.9"
    destdir = tmp_path / "root"
    destdir.mkdir()
    result = subprocess.run(
        ["bash", str(bundle_dir / "install.sh"), "--bundle", str(bundle_dir), "--key",
         str(tmp_path / "keys/release.pub"), "--destdir", str(destdir), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (destdir / "etc/aami/trusted-keys/ops.pub").is_file()
    installed = subprocess.run([str(destdir / "opt/aami/current/bin/aami-agent")],
                               capture_output=True, text=True)
    assert installed.stdout.strip() == "aami-agent 9.9.9"


def test_tampered_bundle_is_refused_with_exit_1(tmp_path: Path) -> None:
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "keys"), "--name", "release")
    out = tmp_path / "aami.tar.gz"
    run_cli("aami", "bundle", "build", "--key", str(tmp_path / "keys/release.key"),
            "--out", str(out), "--dist", str(_dist(tmp_path)), "--quiet")
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    refused = run_cli("aami", "bundle", "verify", str(out), "--key",
                      str(tmp_path / "keys/release.pub"), check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("aami: bundle refused: ") and "Traceback" not in refused.stderr


def test_usage_errors_exit_2_naming_the_flag(tmp_path: Path) -> None:
    missing = run_cli("aami", "bundle", "build", "--key", str(tmp_path / "nope.key"),
                      "--out", str(tmp_path / "b.tar.gz"), check=False)
    assert missing.returncode == 2 and "--key" in missing.stderr
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "k"), "--name", "r")
    no_dist = run_cli("aami", "bundle", "build", "--key", str(tmp_path / "k/r.key"),
                      "--out", str(tmp_path / "b.tar.gz"), "--dist", str(tmp_path / "none"),
                      check=False)
    assert no_dist.returncode == 2 and "make binaries" in no_dist.stderr
    assert not (tmp_path / "b.tar.gz").exists()


def test_verify_takes_the_unpacked_directory_and_refuses_what_install_sh_refuses(
    tmp_path: Path,
) -> None:
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "keys"), "--name", "release")
    out = tmp_path / "aami.tar.gz"
    run_cli("aami", "bundle", "build", "--key", str(tmp_path / "keys/release.key"),
            "--out", str(out), "--dist", str(_dist(tmp_path)), "--version", "1.2.3", "--quiet")
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "usb", filter="data")
    root = tmp_path / "usb" / "aami-bundle-1.2.3"
    key = str(tmp_path / "keys/release.pub")
    # The release key's public half travels too, for --release-key-sha256 pinning.
    assert (root / "release.pub").read_bytes() == (tmp_path / "keys/release.pub").read_bytes()

    ok = run_cli("aami", "bundle", "verify", str(root), "--key", key)
    assert ok.stdout.startswith(f"verified {root}: ")

    def refused(reason: str) -> None:
        result = run_cli("aami", "bundle", "verify", str(root), "--key", key, check=False)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("aami: bundle refused: ") and reason in result.stderr

    (root / "extra.sh").write_text("echo smuggled\n")
    refused("extra.sh")
    (root / "extra.sh").unlink()
    (root / "VERSION").unlink()
    (root / "VERSION").symlink_to(root / "install.sh")
    refused("not a regular file")
    (root / "VERSION").unlink()
    (root / "VERSION").write_text("1.2.4\n")
    refused("VERSION")
    missing = run_cli("aami", "bundle", "verify", str(tmp_path / "nowhere"), "--key", key,
                      check=False)
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr
