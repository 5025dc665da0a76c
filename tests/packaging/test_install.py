"""packaging/install.sh against hand-made bundles signed with real openssl.

Install into a DESTDIR, upgrade keeping configuration and state, roll back (and
forward again), and refuse, writing nothing at all, when any one byte of any
bundle file has changed, when the signing key is not the trusted one, or when the
bundle smuggles a file or a path. TMPDIR points into the test directory so the
tests also see that staging is cleaned up.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.packaging.bundlekit import (
    PAYLOAD_TYPE,
    ReleaseKey,
    build_bundle,
    envelope_signature,
    make_release_key,
    openssl_sign,
    sign_bundle,
)
from tests.packaging.tools import REPO, require_tool

INSTALL = REPO / "packaging" / "install.sh"


def run_install(destdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    require_tool("openssl")
    require_tool("sha256sum")
    env = {**os.environ, "TMPDIR": str(destdir.parent / "tmp")}
    Path(env["TMPDIR"]).mkdir(exist_ok=True)
    return subprocess.run(["bash", str(INSTALL), "--destdir", str(destdir), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under root with its content (files) or link target (symlinks)."""
    state: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            state[rel] = path.read_bytes()
        else:
            state[rel] = "dir"
    return state


def release_of(destdir: Path, link: str = "current") -> str:
    return os.readlink(destdir / "opt/aami" / link)


def run_program(destdir: Path, name: str) -> str:
    link = destdir / "usr/bin" / name
    target = os.readlink(link)
    assert target == f"/opt/aami/current/bin/{name}"
    return subprocess.run([str(destdir / target.lstrip("/"))], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def key(tmp_path: Path) -> ReleaseKey:
    return make_release_key(tmp_path / "keys")


@pytest.fixture
def destdir(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def test_first_install_into_destdir(tmp_path: Path, key: ReleaseKey, destdir: Path) -> None:
    bundle = build_bundle(tmp_path / "b1", "0.1.0", key)
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("aami 0.1.0 installed under")

    assert release_of(destdir).startswith("releases/0.1.0-")
    for name in ("aami-agent", "aami-server", "aami"):
        assert run_program(destdir, name) == f"{name} 0.1.0"
    for unit in ("aami-agent.service", "aami-server.service"):
        installed = destdir / "usr/lib/systemd/system" / unit
        assert installed.read_bytes() == (REPO / "systemd" / unit).read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o644
    assert (destdir / "usr/lib/sysusers.d/aami-server.conf").is_file()
    assert (destdir / "etc/aami/release.pub").read_bytes() == key.public.read_bytes()
    assert (destdir / "etc/aami/trusted-keys/ops.pub").read_bytes() == (
        bundle / "trusted-keys/ops.pub"
    ).read_bytes()
    assert (destdir / "usr/share/doc/aami/install.md").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []  # staging removed


def test_default_server_config_loads_with_the_server(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    from aami.server.config import load_config

    bundle = build_bundle(tmp_path / "b1", "0.1.0", key)
    assert run_install(destdir, "--bundle", str(bundle), "--key", str(key.public)).returncode == 0
    config = load_config(str(destdir / "etc/aami/server.yaml"), environ={})
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    assert config.database_url == "sqlite:////var/lib/aami-server/aami.db"
    assert config.legacy_checks is False


def installed_twice(tmp_path: Path, key: ReleaseKey, destdir: Path) -> tuple[str, str]:
    first = build_bundle(tmp_path / "b1", "0.1.0", key)
    assert run_install(destdir, "--bundle", str(first), "--key", str(key.public)).returncode == 0
    v1 = release_of(destdir)
    # The operator's configuration and the services' state, which upgrades keep.
    (destdir / "etc/aami/server.yaml").write_text("server: {listen: 0.0.0.0:8443}\n")
    (destdir / "etc/aami/agent.yaml").write_text("server: {url: https://config:8443}\n")
    (destdir / "var/lib/aami-server").mkdir(parents=True)
    (destdir / "var/lib/aami-server/aami.db").write_bytes(b"SQLite format 3\x00 state")
    second = build_bundle(tmp_path / "b2", "0.2.0", key)
    result = run_install(destdir, "--bundle", str(second))  # key: the installed release.pub
    assert result.returncode == 0, result.stderr
    return v1, release_of(destdir)


def test_upgrade_keeps_config_state_and_previous(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    v1, v2 = installed_twice(tmp_path, key, destdir)
    assert v2.startswith("releases/0.2.0-") and v1 != v2
    assert release_of(destdir, "previous") == v1
    assert (destdir / "opt/aami" / v1 / "bin/aami-agent").is_file()
    assert run_program(destdir, "aami-agent") == "aami-agent 0.2.0"
    assert (destdir / "etc/aami/server.yaml").read_text() == "server: {listen: 0.0.0.0:8443}\n"
    assert (destdir / "etc/aami/agent.yaml").read_text() == "server: {url: https://config:8443}\n"
    assert (destdir / "var/lib/aami-server/aami.db").read_bytes() == b"SQLite format 3\x00 state"


def test_rollback_and_roll_forward(tmp_path: Path, key: ReleaseKey, destdir: Path) -> None:
    v1, v2 = installed_twice(tmp_path, key, destdir)
    result = run_install(destdir, "--rollback")
    assert result.returncode == 0, result.stderr
    assert "rolled back to release" in result.stdout
    assert (release_of(destdir), release_of(destdir, "previous")) == (v1, v2)
    assert run_program(destdir, "aami-server") == "aami-server 0.1.0"
    assert (destdir / "etc/aami/server.yaml").read_text() == "server: {listen: 0.0.0.0:8443}\n"
    assert run_install(destdir, "--rollback").returncode == 0
    assert release_of(destdir) == v2


def test_rollback_refuses_a_tampered_stored_release(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    v1, _ = installed_twice(tmp_path, key, destdir)
    program = destdir / "opt/aami" / v1 / "bin/aami-agent"
    program.write_text(program.read_text() + "# changed\n")
    before = snapshot(destdir)
    result = run_install(destdir, "--rollback")
    assert result.returncode == 1
    assert "no longer matches its manifest" in result.stderr
    assert snapshot(destdir) == before


def test_rollback_without_previous_is_an_error(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    bundle = build_bundle(tmp_path / "b1", "0.1.0", key)
    assert run_install(destdir, "--bundle", str(bundle), "--key", str(key.public)).returncode == 0
    result = run_install(destdir, "--rollback")
    assert result.returncode == 1
    assert result.stderr.strip() == "install.sh: no previous release to roll back to"


def bundle_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def flip_one_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_any_one_byte_change_is_refused_and_nothing_is_written(
    tmp_path: Path, key: ReleaseKey
) -> None:
    """Every file of the bundle (a middle byte; the last one too for the MANIFEST
    files, whose trailing newline is part of what is signed): install and upgrade."""
    pristine = build_bundle(tmp_path / "b", "0.2.0", key)
    installed = tmp_path / "installed"
    installed.mkdir()
    old = build_bundle(tmp_path / "b-old", "0.1.0", key)
    assert run_install(installed, "--bundle", str(old), "--key", str(key.public)).returncode == 0
    before_upgrade = snapshot(installed)
    empty = tmp_path / "empty"
    empty.mkdir()
    files = bundle_files(pristine)
    assert {"MANIFEST.sha256", "MANIFEST.sha256.sig", "MANIFEST.dsse.json", "VERSION",
            "bin/aami-agent", "install.sh", "trusted-keys/ops.pub"} <= set(files)
    original = {name: (pristine / name).read_bytes() for name in files}
    for name in files:
        for position in ((0, -1) if name.startswith("MANIFEST.") else (len(original[name]) // 2,)):
            flip_one_byte(pristine / name, position)
            for root, extra in ((empty, ("--key", str(key.public))), (installed, ())):
                result = run_install(root, "--bundle", str(pristine), *extra)
                assert result.returncode == 1, f"{name}[{position}] accepted: {result.stdout}"
                assert result.stderr.startswith("install.sh: "), result.stderr
            assert snapshot(empty) == {}, name
            assert snapshot(installed) == before_upgrade, name
            (pristine / name).write_bytes(original[name])
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_bundle_signed_by_another_key_is_refused(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    other = make_release_key(tmp_path / "other", "other")
    bundle = build_bundle(tmp_path / "b", "0.1.0", other)
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 1
    assert "signature does not verify" in result.stderr
    assert snapshot(destdir) == {}


@pytest.mark.parametrize("mischief", ["unlisted-file", "symlink", "traversal", "absolute"])
def test_smuggled_files_and_paths_are_refused(
    tmp_path: Path, key: ReleaseKey, destdir: Path, mischief: str
) -> None:
    bundle = build_bundle(tmp_path / "b", "0.1.0", key)
    if mischief == "unlisted-file":
        (bundle / "bin/backdoor").write_text("#!/bin/sh\n")
    elif mischief == "symlink":
        (bundle / "bin/shadow").symlink_to("/etc/shadow")
    else:
        outside = "../../../etc/cron.d/x" if mischief == "traversal" else "/etc/cron.d/x"
        (tmp_path / "b" / "x").write_text("* * * * * root sh\n")
        manifest = bundle / "MANIFEST.sha256"
        digest = subprocess.run(["sha256sum", str(tmp_path / "b" / "x")], capture_output=True,
                                text=True, check=True).stdout.split()[0]
        manifest.write_text(manifest.read_text() + f"{digest}  {outside}\n")
        resign_manifest_only(bundle, key)
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 1, result.stdout
    assert snapshot(destdir) == {}


def resign_manifest_only(bundle: Path, key: ReleaseKey) -> None:
    """Sign an edited manifest as a compromised builder would (validly)."""
    from aami.trust.envelope import sign_envelope

    manifest = (bundle / "MANIFEST.sha256").read_bytes()
    openssl_sign(key, bundle / "MANIFEST.sha256", bundle / "MANIFEST.sha256.sig")
    envelope = sign_envelope(PAYLOAD_TYPE, manifest, key.private.read_bytes())
    (bundle / "MANIFEST.dsse.json").write_text(
        json.dumps(envelope.to_json(), separators=(",", ":")) + "\n")


def test_first_install_without_a_key_is_a_usage_error(tmp_path: Path, key: ReleaseKey,
                                                       destdir: Path) -> None:
    bundle = build_bundle(tmp_path / "b", "0.1.0", key)
    result = run_install(destdir, "--bundle", str(bundle))
    assert result.returncode == 2
    assert result.stderr.startswith("install.sh: --key: no release key given")
    assert run_install(destdir, "--bogus").returncode == 2


def _verify_block() -> str:
    docs = (REPO / "docs/install.md").read_text()
    return docs.split("<!-- verify-commands -->")[1].split("```sh")[1].split("```")[0]


def _run_verify_block(bundle: Path, key: ReleaseKey) -> subprocess.CompletedProcess[str]:
    # POSIX sh (dash on Debian), no `set -e`: the block must fail loudly by itself.
    script = f"cd {bundle}\nRELEASE_PUB={key.public}\n{_verify_block()}"
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("indent", [None, 2])
def test_documented_standard_tool_verification(
    tmp_path: Path, key: ReleaseKey, indent: int | None
) -> None:
    """The docs/install.md commands, verbatim, accept a good bundle and its DSSE envelope."""
    bundle = build_bundle(tmp_path / "b", "0.1.0", key, indent=indent)
    result = _run_verify_block(bundle, key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Signature Verified Successfully") == 2
    assert result.stdout.strip().endswith("bundle verified")
    assert len(envelope_signature(bundle)) == 64
    # ...and reject the same bundle with one byte changed.
    flip_one_byte(bundle / "bin/aami-agent", 3)
    bad = _run_verify_block(bundle, key)
    assert bad.returncode == 1
    assert "BUNDLE REFUSED: a listed file does not match" in bad.stderr


def test_documented_verification_refuses_symlinks_unlisted_files_and_other_keys(
    tmp_path: Path, key: ReleaseKey
) -> None:
    bundle = build_bundle(tmp_path / "b", "0.1.0", key)
    (bundle / "extra").write_text("smuggled\n")
    unlisted = _run_verify_block(bundle, key)
    assert unlisted.returncode == 1
    assert "BUNDLE REFUSED: files differ from MANIFEST.sha256: > extra" in unlisted.stderr
    (bundle / "extra").unlink()
    (bundle / "link").symlink_to("VERSION")
    linked = _run_verify_block(bundle, key)
    assert linked.returncode == 1
    assert "BUNDLE REFUSED: not a regular file: ./link" in linked.stderr
    (bundle / "link").unlink()
    other = make_release_key(tmp_path / "other")
    wrong_key = _run_verify_block(bundle, other)
    assert wrong_key.returncode == 1
    assert "BUNDLE REFUSED: MANIFEST.sha256: bad signature" in wrong_key.stderr
    assert "bundle verified" not in wrong_key.stdout


def test_resigned_bundle_helper_signs_validly(tmp_path: Path, key: ReleaseKey,
                                              destdir: Path) -> None:
    """Control for the smuggling tests: a re-signed but clean bundle installs."""
    bundle = build_bundle(tmp_path / "b", "0.1.0", key)
    sign_bundle(bundle, key)
    resign_manifest_only(bundle, key)
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 0, result.stderr


def test_indented_envelope_and_keys_trusted_layout_are_accepted(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    bundle = build_bundle(tmp_path / "b", "0.1.0", key, keys_dir="keys/trusted", indent=2)
    assert (bundle / "MANIFEST.dsse.json").read_text().startswith('{\n  "payloadType": ')
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 0, result.stderr
    assert (destdir / "etc/aami/trusted-keys/ops.pub").read_bytes() == (
        bundle / "keys/trusted/ops.pub"
    ).read_bytes()


def test_whitespace_edits_to_the_envelope_are_refused(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    """Same JSON meaning, different bytes: still a changed file, still refused."""
    bundle = build_bundle(tmp_path / "b", "0.1.0", key, indent=2)
    envelope = bundle / "MANIFEST.dsse.json"
    envelope.write_text(envelope.read_text().replace("  ", "\t", 1))
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 1
    assert "MANIFEST.dsse.json: not the release key's envelope" in result.stderr
    assert snapshot(destdir) == {}


def test_server_config_belongs_to_the_service_group(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    # The unit runs as User=aami: a root:root 0640 server.yaml is unreadable to it.
    (destdir / "etc").mkdir()
    (destdir / "etc/group").write_text("root:x:0:\naami:x:998:\n")
    bundle = build_bundle(tmp_path / "bundle", "0.1.0", key)
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 0, result.stderr
    info = (destdir / "etc/aami/server.yaml").stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 998, 0o640)


def test_server_config_without_the_group_yet_says_what_to_run(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    bundle = build_bundle(tmp_path / "bundle", "0.1.0", key)
    result = run_install(destdir, "--bundle", str(bundle), "--key", str(key.public))
    assert result.returncode == 0, result.stderr
    assert "chgrp aami /etc/aami/server.yaml" in result.stderr


def test_destdir_is_created_and_start_is_refused_out_loud(
    tmp_path: Path, key: ReleaseKey
) -> None:
    bundle = build_bundle(tmp_path / "bundle", "0.1.0", key)
    image = tmp_path / "image"  # does not exist yet
    result = run_install(image, "--bundle", str(bundle), "--key", str(key.public), "--start")
    assert result.returncode == 0, result.stderr
    assert "--start is ignored with --destdir" in result.stderr
    assert release_of(image).startswith("releases/0.1.0-")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    refused = run_install(not_a_dir, "--bundle", str(bundle), "--key", str(key.public))
    assert refused.returncode == 2
    assert "--destdir" in refused.stderr and "is not a directory" in refused.stderr
