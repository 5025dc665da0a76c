"""What goes into an offline bundle, gathered from the project tree.

Layout inside the archive (one top directory `aami-bundle-<version>/`), the one
`packaging/install.sh` and docs/install.md expect:

    VERSION
    bin/aami-agent  bin/aami-agent-static  bin/aami-server  bin/aami
    systemd/*.service  systemd/*.conf
    install.sh  install-agent.sh  docs/install.md
    release.pub                 the release public key itself: a node pinning its id
                                (install-agent.sh --release-key-sha256) fetches it
    trusted-keys/*.pub          publisher keys nodes will trust
    scripts/*.signed.json       optional signed scripts to import
    policies/*.yaml             optional policies to import
    MANIFEST.sha256  MANIFEST.sha256.sig  MANIFEST.dsse.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aami.bundle.archive import BundleFile

BINARIES = ("aami-agent", "aami-server", "aami")
OPTIONAL_BINARIES = ("aami-agent-static",)


class BuildError(Exception):
    """A missing or unusable input; str() names the file or flag."""


@dataclass(frozen=True)
class BuildInputs:
    project_root: Path
    dist_dir: Path
    trusted_keys_dir: Path | None = None
    scripts_dir: Path | None = None
    policies: tuple[Path, ...] = ()
    version: str = "0.1.0"
    release_public_pem: bytes | None = None


def collect(inputs: BuildInputs) -> list[BundleFile]:
    files: list[BundleFile] = [BundleFile("VERSION", None, data=f"{inputs.version}\n".encode())]
    if inputs.release_public_pem is not None:
        # Never a source of trust by itself: install.sh takes the key from --key, and
        # install-agent.sh keeps this copy only if it hashes to the pinned key id.
        files.append(BundleFile("release.pub", None, data=inputs.release_public_pem))
    docs = inputs.project_root / "docs" / "install.md"
    if docs.is_file():
        files.append(BundleFile("docs/install.md", docs))
    for name in BINARIES:
        source = inputs.dist_dir / name
        if not source.is_file():
            raise BuildError(f"{source}: missing (run `make binaries` first, or pass --dist)")
        files.append(BundleFile(f"bin/{name}", source, 0o755))
    for name in OPTIONAL_BINARIES:
        source = inputs.dist_dir / name
        if source.is_file():
            files.append(BundleFile(f"bin/{name}", source, 0o755))
    systemd = inputs.project_root / "systemd"
    for unit in sorted(systemd.glob("*.service")) + sorted(systemd.glob("*.conf")):
        files.append(BundleFile(f"systemd/{unit.name}", unit))
    for script in ("install.sh", "install-agent.sh"):
        source = inputs.project_root / "packaging" / script
        if not source.is_file():
            # In the `aami` binary these files are packed inside it (aami/packaging/...).
            raise BuildError(f"{source}: missing from the project tree (or from this binary)")
        files.append(BundleFile(script, source, 0o755))
    if inputs.trusted_keys_dir is not None:
        keys = sorted(inputs.trusted_keys_dir.glob("*.pub"))
        if not keys:
            raise BuildError(f"--trusted-keys {inputs.trusted_keys_dir}: no *.pub files")
        files += [BundleFile(f"trusted-keys/{k.name}", k) for k in keys]
    if inputs.scripts_dir is not None:
        scripts = sorted(inputs.scripts_dir.glob("*.signed.json"))
        if not scripts:
            raise BuildError(f"--scripts {inputs.scripts_dir}: no *.signed.json files")
        files += [BundleFile(f"scripts/{s.name}", s) for s in scripts]
    for policy in inputs.policies:
        if not policy.is_file():
            raise BuildError(f"--policies {policy}: no such file")
        files.append(BundleFile(f"policies/{policy.name}", policy))
    return files
