"""`aami bundle build` and `aami bundle verify`: the operator CLI's packaging side.

`register(subparsers)` adds the commands to the `aami` parser; `run(args)` returns
the exit code (0 ok, 1 verification/operation failed, 2 usage or input error).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aami.bundle.archive import Progress, verify_archive, verify_directory, write_bundle
from aami.bundle.build import BuildError, BuildInputs, collect
from aami.bundle.manifest import BundleRefused
from aami.trust.errors import TrustError
from aami.trust.keys import key_id, load_private_key, load_public_key, public_key_pem

DEFAULT_VERSION = "0.1.0"


def register(subparsers: argparse._SubParsersAction) -> None:
    bundle = subparsers.add_parser("bundle", help="build and verify signed offline bundles")
    sub = bundle.add_subparsers(dest="bundle_command", required=True)
    build = sub.add_parser("build", help="build a signed offline bundle")
    build.add_argument("--key", required=True, help="release private key (PEM)")
    build.add_argument("--out", required=True, help="bundle file to write (.tar.gz)")
    build.add_argument("--dist", default="dist", help="folder with the built binaries")
    build.add_argument("--scripts", help="folder of *.signed.json scripts to include")
    build.add_argument("--policies", action="append", default=[], help="policy YAML to include")
    build.add_argument("--trusted-keys", help="folder of publisher *.pub keys nodes trust")
    build.add_argument("--version", default=DEFAULT_VERSION, dest="bundle_version")
    build.add_argument("--quiet", action="store_true", help="no progress, summary only")
    verify = sub.add_parser("verify", help="verify a bundle against a release public key")
    verify.add_argument("bundle", help="the bundle file, or the directory it was unpacked to")
    verify.add_argument("--key", required=True, help="release public key (PEM)")
    verify.add_argument("--quiet", action="store_true", help="no progress, summary only")


class _Bar:
    """Progress on a terminal; silent when not a TTY or with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\r{what}: {done}/{total}\033[K")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BuildError(f"{flag} {path}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    try:
        if args.bundle_command == "build":
            return _build(args, _Bar(args.quiet))
        return _verify(args, _Bar(args.quiet))
    except BuildError as exc:
        print(f"aami: error: {exc}", file=sys.stderr)
        return 2


def _build(args: argparse.Namespace, progress: Progress) -> int:
    private_pem = _read(args.key, "--key")
    try:
        load_private_key(private_pem)
    except TrustError as exc:
        raise BuildError(f"--key {args.key}: {exc}") from None
    inputs = BuildInputs(
        project_root=Path(__file__).resolve().parent.parent,
        dist_dir=Path(args.dist),
        trusted_keys_dir=Path(args.trusted_keys) if args.trusted_keys else None,
        scripts_dir=Path(args.scripts) if args.scripts else None,
        policies=tuple(Path(p) for p in args.policies),
        version=args.bundle_version,
        release_public_pem=public_key_pem(private_pem),
    )
    start = time.monotonic()
    out = Path(args.out)
    result = write_bundle(out, f"aami-bundle-{args.bundle_version}", collect(inputs),
                          private_pem, progress)
    size = out.stat().st_size
    print(f"built {out}: {len(result.entries)} files, {size / 1e6:.1f} MB, signed by release "
          f"key {key_id(public_key_pem(private_pem))[:16]} in {time.monotonic() - start:.1f}s")
    return 0


def _verify(args: argparse.Namespace, progress: Progress) -> int:
    public_pem = _read(args.key, "--key")
    try:
        load_public_key(public_pem)
    except TrustError as exc:
        raise BuildError(f"--key {args.key}: {exc}") from None
    target = Path(args.bundle)
    if not (target.is_file() or target.is_dir()):
        raise BuildError(f"{args.bundle}: no such file or directory")
    try:
        if target.is_dir():
            result = verify_directory(target, public_pem, progress)
        else:
            result = verify_archive(target, public_pem, progress)
    except BundleRefused as exc:
        print(f"aami: bundle refused: {exc} ({exc.reason})", file=sys.stderr)
        return 1
    print(f"verified {args.bundle}: {len(result.entries)} files match the manifest signed by "
          f"release key {key_id(public_pem)[:16]}")
    return 0
