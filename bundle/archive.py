"""Reading and writing bundle archives (tar.gz) on disk.

Writing: the payload files are hashed while streaming from disk, the manifest is
signed, and the archive is written to a temporary file, fsynced and renamed, so a
failed or interrupted build never leaves a half-written bundle at `--out`.

Reading: every member is checked before its bytes are trusted: regular files and
directories only (no links, devices or FIFOs), safe relative paths, one top-level
directory. Hashes are computed while streaming; nothing is extracted to disk
until everything verified (`extract` is called only after `verify_archive`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aami.bundle.manifest import (
    CONTROL_FILES,
    MANIFEST,
    MANIFEST_DSSE,
    MANIFEST_SIG,
    BundleRefused,
    SignedManifest,
    build_manifest,
    check_digests,
    check_member_path,
    sign_manifest,
    verify_manifest,
)
from aami.trust.envelope import Envelope
from aami.trust.errors import TrustError

Progress = Callable[[str, int, int], None]  # (what, done, total)
MAX_CONTROL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class BundleFile:
    path: str  # inside the bundle, relative to its top directory
    source: Path | None  # a file on disk, or None when `data` holds the bytes
    mode: int = 0o644
    data: bytes | None = None

    def digest(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.source is not None
        return _sha256_file(self.source)


@dataclass(frozen=True)
class VerifiedBundle:
    top: str
    entries: dict[str, str]  # path -> sha256


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, item: BundleFile) -> None:
    if item.data is not None:
        _add_bytes(tar, name, item.data, item.mode)
        return
    assert item.source is not None
    info = tar.gettarinfo(str(item.source), arcname=name)
    info.mode, info.uid, info.gid, info.uname, info.gname = item.mode, 0, 0, "", ""
    with item.source.open("rb") as handle:
        tar.addfile(info, handle)


def write_bundle(out: Path, top: str, files: Iterable[BundleFile], release_private_pem: bytes,
                 progress: Progress | None = None) -> VerifiedBundle:
    files = sorted(files, key=lambda f: f.path)
    digests = {}
    for index, item in enumerate(files, start=1):
        digests[item.path] = item.digest()
        if progress:
            progress("hashing", index, len(files))
    manifest = build_manifest(digests)
    signed = sign_manifest(manifest, release_private_pem)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for index, item in enumerate(files, start=1):
                _add_file(tar, f"{top}/{item.path}", item)
                if progress:
                    progress("packing", index, len(files))
            _add_bytes(tar, f"{top}/{MANIFEST}", manifest)
            _add_bytes(tar, f"{top}/{MANIFEST_SIG}", signed.raw_signature)
            # The one canonical spelling install.sh rebuilds and compares byte for byte.
            _add_bytes(tar, f"{top}/{MANIFEST_DSSE}",
                       json.dumps(signed.envelope.to_json(), separators=(",", ":")).encode()
                       + b"\n")
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return VerifiedBundle(top, digests)


def _split_top(name: str) -> tuple[str, str]:
    check_member_path(name.rstrip("/"))
    top, _, rest = name.rstrip("/").partition("/")
    return top, rest


def verify_archive(path: Path, release_public_pem: bytes,
                   progress: Progress | None = None) -> VerifiedBundle:
    """Verify a bundle archive completely without extracting it."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            tops, actual, control = _scan(tar, progress)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise BundleRefused("malformed_archive", f"{path}: not a readable tar.gz ({exc})"
                            ) from None
    if len(tops) != 1:
        raise BundleRefused("malformed_archive", "a bundle has exactly one top directory")
    return VerifiedBundle(tops.pop(), _verify_control(control, actual, release_public_pem))


def verify_directory(root: Path, release_public_pem: bytes,
                     progress: Progress | None = None) -> VerifiedBundle:
    """Verify an unpacked bundle (the directory holding MANIFEST.sha256) in place.

    The same rules as for an archive: regular files only (a symlink could point the
    check at one file and the installer at another), every file listed, every
    listed file present with its digest. Nothing is written.
    """
    paths: list[Path] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise BundleRefused("unsafe_member", f"{relative}: not a regular file")
        if path.is_file():
            paths.append(path)
    actual: dict[str, str] = {}
    control: dict[str, bytes] = {}
    for index, path in enumerate(paths, start=1):
        relative = path.relative_to(root).as_posix()
        check_member_path(relative)
        if relative in CONTROL_FILES:
            with path.open("rb") as handle:
                control[relative] = handle.read(MAX_CONTROL_BYTES)
        else:
            actual[relative] = _sha256_file(path)
        if progress:
            progress("verifying", index, len(paths))
    return VerifiedBundle(root.name, _verify_control(control, actual, release_public_pem))


def _verify_control(control: dict[str, bytes], actual: dict[str, str],
                    release_public_pem: bytes) -> dict[str, str]:
    missing = sorted(CONTROL_FILES - set(control))
    if missing:
        raise BundleRefused("missing_file", f"{missing[0]}: missing from the bundle")
    try:
        envelope = Envelope.from_json(json.loads(control[MANIFEST_DSSE]))
    except (ValueError, TrustError) as exc:
        raise BundleRefused("malformed_manifest", f"{MANIFEST_DSSE}: {exc}") from None
    entries = verify_manifest(
        SignedManifest(control[MANIFEST], control[MANIFEST_SIG], envelope), release_public_pem
    )
    check_digests(entries, actual)
    return entries


def _scan(tar: tarfile.TarFile, progress: Progress | None
          ) -> tuple[set[str], dict[str, str], dict[str, bytes]]:
    """Walk the members: (top directories, payload path -> sha256, control files)."""
    members = tar.getmembers()
    tops: set[str] = set()
    actual: dict[str, str] = {}
    control: dict[str, bytes] = {}
    for index, member in enumerate(members, start=1):
        top, rest = _split_top(member.name)
        tops.add(top)
        if member.isdir():
            continue
        if not member.isfile() or not rest:
            raise BundleRefused("unsafe_member", f"{member.name}: not a regular file")
        handle = tar.extractfile(member)
        assert handle is not None
        if rest in CONTROL_FILES:
            control[rest] = handle.read(MAX_CONTROL_BYTES)
        else:
            digest = hashlib.sha256()
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            actual[rest] = digest.hexdigest()
        if progress:
            progress("verifying", index, len(members))
    return tops, actual, control


def extract(path: Path, destination: Path, verified: VerifiedBundle) -> Path:
    """Extract a bundle that `verify_archive` accepted; returns its top directory.

    The extracted files are hashed again against the verified manifest, so an archive
    swapped between verification and extraction is still refused.
    """
    with tarfile.open(path, mode="r:gz") as tar:
        tar.extractall(destination, filter="data")
    root = destination / verified.top
    for relative, digest in verified.entries.items():
        target = root / relative
        if not target.is_file() or _sha256_file(target) != digest:
            raise BundleRefused("hash_mismatch", f"{relative}: changed after verification")
    # A swapped archive could also add files: anything unlisted is refused, not ignored.
    for found in destination.rglob("*"):
        if found.is_dir() and not found.is_symlink():
            continue
        inside = found.is_relative_to(root)
        relative = found.relative_to(root).as_posix() if inside else ""
        if not inside or (relative not in verified.entries and relative not in CONTROL_FILES):
            raise BundleRefused("unlisted_file",
                                f"{found.relative_to(destination)}: appeared after verification")
    return root
