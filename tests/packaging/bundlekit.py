"""Hand-assembled offline bundles for the installer tests, signed with real openssl.

The layout and the three MANIFEST files follow docs/install.md exactly; the
bundle side (`aami bundle build`) must produce the same. Binaries are small shell
scripts that print their name and version, so a test can tell releases apart.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.packaging.tools import REPO, require_tool

PAYLOAD_TYPE = "application/vnd.aami.bundle-manifest+sha256sum"
PROGRAMS = ("aami-agent", "aami-server", "aami")


@dataclass(frozen=True)
class ReleaseKey:
    private: Path
    public: Path

    @property
    def key_id(self) -> str:
        from aami.trust.keys import key_id

        return key_id(self.public.read_bytes())


def make_release_key(directory: Path, name: str = "release") -> ReleaseKey:
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    subprocess.run([openssl, "genpkey", "-algorithm", "ed25519", "-out", str(private)],
                   check=True, capture_output=True)
    subprocess.run([openssl, "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                   check=True, capture_output=True)
    return ReleaseKey(private, public)


def openssl_sign(key: ReleaseKey, data: Path, signature: Path) -> None:
    subprocess.run([require_tool("openssl"), "pkeyutl", "-sign", "-inkey", str(key.private),
                    "-rawin", "-in", str(data), "-out", str(signature)],
                   check=True, capture_output=True)


def program_text(name: str, version: str) -> str:
    return f"#!/bin/sh\necho '{name} {version}' \"$@\"\n"


def write_payload(root: Path, version: str, keys_dir: str = "trusted-keys") -> None:
    (root / "VERSION").write_text(version + "\n")
    for name in PROGRAMS:
        program = root / "bin" / name
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text(program_text(name, version))
        program.chmod(0o755)
    shutil.copytree(REPO / "systemd", root / "systemd")
    for script in ("install.sh", "install-agent.sh"):
        shutil.copy2(REPO / "packaging" / script, root / script)
    (root / "docs").mkdir()
    shutil.copy2(REPO / "docs" / "install.md", root / "docs" / "install.md")
    publisher = make_release_key(root / keys_dir, "ops")
    publisher.private.unlink()  # a bundle carries public keys only
    (root / "scripts").mkdir()
    (root / "scripts" / "disk-usage.signed.json").write_text('{"example": true}\n')


def sign_bundle(root: Path, key: ReleaseKey, *, indent: int | None = None) -> None:
    """MANIFEST.sha256 (real sha256sum), its raw signature and the DSSE envelope."""
    from aami.trust.envelope import sign_envelope

    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("MANIFEST.")
    )
    manifest = subprocess.run([require_tool("sha256sum"), "--", *files], cwd=root,
                              check=True, capture_output=True, text=True).stdout
    (root / "MANIFEST.sha256").write_text(manifest)
    openssl_sign(key, root / "MANIFEST.sha256", root / "MANIFEST.sha256.sig")
    envelope = sign_envelope(PAYLOAD_TYPE, manifest.encode(), key.private.read_bytes())
    text = (json.dumps(envelope.to_json(), indent=indent) if indent
            else json.dumps(envelope.to_json(), separators=(",", ":")))
    (root / "MANIFEST.dsse.json").write_text(text + "\n")


def build_bundle(directory: Path, version: str, key: ReleaseKey, *,
                 keys_dir: str = "trusted-keys", indent: int | None = None) -> Path:
    """A signed bundle; `keys_dir` and `indent` choose between the accepted
    spellings (docs/install.md)."""
    root = directory / f"aami-bundle-{version}"
    root.mkdir(parents=True)
    write_payload(root, version, keys_dir)
    sign_bundle(root, key, indent=indent)
    return root


def envelope_signature(root: Path) -> bytes:
    data = json.loads((root / "MANIFEST.dsse.json").read_text())
    return base64.b64decode(data["signatures"][0]["sig"])
