"""The offline bundle: build, verify with our code and with standard tools alone,
and refuse any change. The binaries in `dist/` are stood in for by small files here:
the bundle treats every payload file as opaque bytes (the real binaries are covered
by the packaging tests)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from aami.bundle.archive import extract, verify_archive, write_bundle
from aami.bundle.build import BuildInputs, collect
from aami.bundle.manifest import BundleRefused
from aami.trust.keys import generate_private_key_pem, public_key_pem

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def release(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    private = generate_private_key_pem()
    public = public_key_pem(private)
    pub_path = tmp_path / "release.pub"
    pub_path.write_bytes(public)
    return private, public, pub_path


@pytest.fixture
def built(tmp_path: Path, release: tuple[bytes, bytes, Path]) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("aami-agent", "aami-server", "aami"):
        (dist / name).write_bytes(f"#!/bin/sh\necho {name}\n".encode())
    keys = tmp_path / "trusted"
    keys.mkdir()
    (keys / "publisher.pub").write_bytes(public_key_pem(generate_private_key_pem()))
    files = collect(BuildInputs(project_root=ROOT, dist_dir=dist, trusted_keys_dir=keys))
    out = tmp_path / "out" / "bundle.tar.gz"
    write_bundle(out, "aami-bundle-test", files, release[0])
    return out


def _rewrite(src: Path, dst: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Copy a bundle member by member, letting `change(name, data)` alter one."""
    with tarfile.open(src, "r:gz") as old, tarfile.open(dst, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            result = change(member, data)
            if result is None:
                continue
            member, data = result
            if data is not None:
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)


def test_build_then_verify(built: Path, release: tuple[bytes, bytes, Path]) -> None:
    result = verify_archive(built, release[1])
    assert result.top == "aami-bundle-test"
    expected = {"bin/aami-agent", "install.sh", "trusted-keys/publisher.pub", "VERSION"}
    assert expected <= set(result.entries)
    assert any(p.startswith("systemd/") for p in result.entries)


def test_standard_tools_alone_verify_it(built: Path, release: tuple[bytes, bytes, Path],
                                         tmp_path: Path) -> None:
    with tarfile.open(built) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    top = tmp_path / "x" / "aami-bundle-test"
    subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(release[2]),
                    "-rawin", "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"],
                   cwd=top, check=True, capture_output=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=top, check=True)


def test_every_one_byte_change_is_refused(built: Path, release: tuple[bytes, bytes, Path],
                                          tmp_path: Path) -> None:
    with tarfile.open(built) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    assert len(names) > 8
    for index, name in enumerate(names):
        def flip(member, data, name=name):  # type: ignore[no-untyped-def]
            if member.name == name:
                data = bytes([data[0] ^ 0x01]) + data[1:]
            return member, data

        tampered = tmp_path / f"t{index}.tar.gz"
        _rewrite(built, tampered, flip)
        with pytest.raises(BundleRefused) as refused:
            verify_archive(tampered, release[1])
        reasons = {"hash_mismatch", "bad_signature", "malformed_manifest"}
        assert refused.value.reason in reasons, name


def test_added_and_removed_files_are_refused(built: Path, release: tuple[bytes, bytes, Path],
                                             tmp_path: Path) -> None:
    extra = tmp_path / "extra.tar.gz"
    with tarfile.open(built) as old, tarfile.open(extra, "w:gz") as new:
        for member in old.getmembers():
            new.addfile(member, old.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("aami-bundle-test/bin/backdoor")
        info.size = 3
        new.addfile(info, io.BytesIO(b"hi\n"))
    with pytest.raises(BundleRefused, match="backdoor") as refused:
        verify_archive(extra, release[1])
    assert refused.value.reason == "unlisted_file"

    removed = tmp_path / "removed.tar.gz"
    _rewrite(built, removed, lambda m, d: None if m.name.endswith("bin/aami") else (m, d))
    with pytest.raises(BundleRefused) as refused:
        verify_archive(removed, release[1])
    assert refused.value.reason == "missing_file"


def test_links_and_traversal_are_refused(built: Path, release: tuple[bytes, bytes, Path],
                                         tmp_path: Path) -> None:
    for label, make in {
        "symlink": lambda: _member("aami-bundle-test/bin/evil", tarfile.SYMTYPE, "/etc/passwd"),
        "traversal": lambda: _member("aami-bundle-test/../../etc/cron.d/x", tarfile.REGTYPE),
        "absolute": lambda: _member("/etc/cron.d/x", tarfile.REGTYPE),
    }.items():
        bad = tmp_path / f"{label}.tar.gz"
        with tarfile.open(built) as old, tarfile.open(bad, "w:gz") as new:
            for member in old.getmembers():
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
            info = make()
            new.addfile(info, io.BytesIO(b"x") if info.isfile() else None)
        with pytest.raises(BundleRefused) as refused:
            verify_archive(bad, release[1])
        assert refused.value.reason in {"unsafe_member", "unsafe_path"}, label


def _member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def test_wrong_release_key_and_garbage_are_refused(built: Path, tmp_path: Path) -> None:
    other = public_key_pem(generate_private_key_pem())
    with pytest.raises(BundleRefused) as refused:
        verify_archive(built, other)
    assert refused.value.reason == "bad_signature"
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball")
    with pytest.raises(BundleRefused) as refused:
        verify_archive(garbage, other)
    assert refused.value.reason == "malformed_archive"


def test_extract_rechecks_hashes(built: Path, release: tuple[bytes, bytes, Path],
                                 tmp_path: Path) -> None:
    verified = verify_archive(built, release[1])
    root = extract(built, tmp_path / "ok", verified)
    assert (root / "bin" / "aami-agent").read_bytes().startswith(b"#!/bin/sh")
    swapped = tmp_path / "swapped.tar.gz"
    _rewrite(built, swapped, lambda m, d: (m, b"evil\n" if m.name.endswith("bin/aami") else d))
    with pytest.raises(BundleRefused):
        extract(swapped, tmp_path / "bad", verified)


def test_extract_refuses_files_added_after_verification(
    built: Path, release: tuple[bytes, bytes, Path], tmp_path: Path
) -> None:
    # The archive verified, then swapped for one with the same listed files plus one
    # more: the extra file must not be imported just because it sits in scripts/.
    verified = verify_archive(built, release[1])
    swapped = tmp_path / "swapped.tar.gz"
    with tarfile.open(built) as old, tarfile.open(swapped, "w:gz") as new:
        for member in old.getmembers():
            new.addfile(member, old.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("aami-bundle-test/scripts/evil.signed.json")
        info.size = 3
        new.addfile(info, io.BytesIO(b"{}\n"))
    with pytest.raises(BundleRefused, match=r"evil\.signed\.json") as refused:
        extract(swapped, tmp_path / "bad", verified)
    assert refused.value.reason == "unlisted_file"


def test_failed_build_leaves_no_file(tmp_path: Path, release: tuple[bytes, bytes, Path]) -> None:
    from aami.bundle.build import BuildError

    with pytest.raises(BuildError, match="make binaries"):
        collect(BuildInputs(project_root=ROOT, dist_dir=tmp_path / "nothing"))
    assert not list(tmp_path.glob("*.tar.gz"))
