"""The bundle manifest: what a bundle contains, and the release signature over it.

Pure code (bytes in, bytes or a typed refusal out). A bundle carries three files at
its root besides its payload:

* `MANIFEST.sha256`: one `<sha256>  <path>` line per payload file, sorted, in the
  format `sha256sum -c` reads;
* `MANIFEST.sha256.sig`: a raw Ed25519 signature over those exact bytes, so that
  `openssl pkeyutl -verify -pubin -inkey release.pub -rawin -in MANIFEST.sha256
  -sigfile MANIFEST.sha256.sig` checks it with standard tools alone;
* `MANIFEST.dsse.json`: the same manifest in a DSSE envelope signed by the same
  key, for tools that speak DSSE.

Threats: a USB stick swapped or altered in transit (any changed, added or removed
file must be refused), a bundle signed by another key (the release key is pinned
out of band: the operator passes `--key release.pub`), path tricks in the archive
(`..`, absolute paths, links) that would write outside the install root.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from aami.trust.envelope import Envelope, pae, sign_envelope
from aami.trust.errors import TrustError
from aami.trust.keys import key_id, load_private_key, public_key_pem, signature_valid

MANIFEST = "MANIFEST.sha256"
MANIFEST_SIG = "MANIFEST.sha256.sig"
MANIFEST_DSSE = "MANIFEST.dsse.json"
CONTROL_FILES = frozenset({MANIFEST, MANIFEST_SIG, MANIFEST_DSSE})
PAYLOAD_TYPE = "application/vnd.aami.bundle-manifest+sha256sum"

_LINE_RE = re.compile(r"^([0-9a-f]{64})  (\S(?:.*\S)?)$")


class BundleRefused(TrustError):
    """The bundle failed verification; `reason` says which rule."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SignedManifest:
    manifest: bytes
    raw_signature: bytes
    envelope: Envelope


def check_member_path(path: str) -> None:
    """Refuse paths that could escape the extraction root."""
    parts = path.split("/")
    if path.startswith("/") or not path or any(p in ("", ".", "..") for p in parts):
        raise BundleRefused("unsafe_path", f"{path!r}: unsafe path in bundle")


def build_manifest(digests: Mapping[str, str]) -> bytes:
    """The manifest for payload files given as path -> sha256 hex."""
    lines = []
    for path in sorted(digests):
        check_member_path(path)
        if path in CONTROL_FILES:
            raise BundleRefused("unsafe_path", f"{path!r}: reserved name")
        lines.append(f"{digests[path]}  {path}\n")
    return "".join(lines).encode("utf-8")


def parse_manifest(manifest: bytes) -> dict[str, str]:
    """path -> sha256 hex; refuses duplicates and malformed lines."""
    entries: dict[str, str] = {}
    try:
        text = manifest.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleRefused("malformed_manifest", f"{MANIFEST} is not UTF-8") from None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE_RE.match(line)
        if not match:
            raise BundleRefused("malformed_manifest", f"{MANIFEST} line {number} is malformed")
        digest, path = match.groups()
        check_member_path(path)
        if path in entries:
            raise BundleRefused("malformed_manifest", f"{MANIFEST} lists {path!r} twice")
        entries[path] = digest
    if not entries:
        raise BundleRefused("malformed_manifest", f"{MANIFEST} is empty")
    return entries


def sign_manifest(manifest: bytes, release_private_pem: bytes) -> SignedManifest:
    raw = load_private_key(release_private_pem).sign(manifest)
    return SignedManifest(manifest, raw, sign_envelope(PAYLOAD_TYPE, manifest,
                                                       release_private_pem))


def verify_manifest(signed: SignedManifest, release_public_pem: bytes) -> dict[str, str]:
    """Check both signatures with the pinned release key; return the entries."""
    if not signature_valid(release_public_pem, signed.raw_signature, signed.manifest):
        raise BundleRefused("bad_signature",
                            f"{MANIFEST_SIG} is not a valid signature by this release key")
    envelope = signed.envelope
    if envelope.payload_type != PAYLOAD_TYPE or envelope.payload != signed.manifest:
        raise BundleRefused("bad_signature", f"{MANIFEST_DSSE} does not carry {MANIFEST}")
    wanted = key_id(release_public_pem)
    for signature in envelope.signatures:
        if signature.keyid != wanted:
            continue
        if not signature_valid(release_public_pem, signature.sig,
                               pae(envelope.payload_type, envelope.payload)):
            break
        return parse_manifest(signed.manifest)
    raise BundleRefused("bad_signature", f"{MANIFEST_DSSE} is not signed by this release key")


def check_digests(entries: Mapping[str, str], actual: Mapping[str, str]) -> None:
    """Every listed file present with its hash; nothing unlisted besides the manifest.
    `actual` maps each payload file found in the bundle to its sha256 hex."""
    for path, digest in entries.items():
        if path not in actual:
            raise BundleRefused("missing_file", f"{path}: listed in the manifest but missing")
        if actual[path] != digest:
            raise BundleRefused("hash_mismatch", f"{path}: content does not match the manifest")
    extra = sorted(set(actual) - set(entries) - CONTROL_FILES)
    if extra:
        raise BundleRefused("unlisted_file", f"{extra[0]}: in the bundle but not in the manifest")


def release_key_id(private_pem: bytes) -> str:
    return key_id(public_key_pem(private_pem))
