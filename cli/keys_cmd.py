"""`aami keys generate` and `aami key register`, plus reading a trusted-keys directory."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from aami import trust
from aami.cli.api_client import ApiClient
from aami.cli.errors import OperationFailed, UsageError
from aami.cli.files import read_bytes, write_atomic

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def generate(args: argparse.Namespace) -> int:
    name = args.name
    if not _KEY_NAME.fullmatch(name):
        raise UsageError(f"--name: {name!r} must be letters, digits, '.', '_' or '-'")
    out = Path(args.out)
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create directory ({exc.strerror})") from None
    if not out.is_dir():
        raise UsageError(f"--out {out}: is not a directory")
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    if not args.force:
        for path in (key_path, pub_path):
            if path.exists():
                raise UsageError(f"{path} exists; pass --force to overwrite it")
    private = trust.generate_private_key_pem()
    public = trust.public_key_pem(private)
    # 0600 from the first byte; link(2) refuses to replace a key created meanwhile.
    _write_new(key_path, private, 0o600, args.force)
    _write_new(pub_path, public, 0o644, args.force)
    print(f"private key: {key_path} (keep it offline; never copy it to a server or node)")
    print(f"public key:  {pub_path}")
    print(f"key id:      {trust.key_id(public)}")
    return 0


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    try:
        write_atomic(path, data, mode=mode, overwrite=force)
    except FileExistsError:
        raise UsageError(f"{path} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from None


def register(args: argparse.Namespace, client: ApiClient) -> int:
    pem = read_bytes(args.pubfile, "public key")
    if b"PRIVATE KEY" in pem:
        # Stops the worst slip of all: uploading the private half to the server.
        raise UsageError(f"{args.pubfile}: is a PRIVATE key; register the .pub file")
    try:
        key = trust.load_trusted_key(pem, name=args.name)
    except trust.MalformedKey as exc:
        raise UsageError(f"{args.pubfile}: {exc}") from None
    reply = client.post("/publisher-keys", {"name": args.name, "public_key": pem.decode()})
    body = reply.body if isinstance(reply.body, dict) else {}
    server_id = body.get("key_id")
    if server_id is not None and server_id != key.key_id:
        raise OperationFailed(
            f"server computed key id {server_id} but the key's id is {key.key_id}"
        )
    print(f"registered {args.name}: key id {key.key_id}")
    return 0


def revoke(args: argparse.Namespace, client: ApiClient) -> int:
    """Find the registered key by name and revoke it (uploads it signed are refused)."""
    offset = 0
    while True:
        body = client.get("/publisher-keys", limit="500", offset=str(offset)).body
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise OperationFailed("server answered GET /publisher-keys without a `data` list")
        match = next((r for r in rows if isinstance(r, dict) and r.get("name") == args.name), None)
        if match is not None:
            break
        if len(rows) < 500:
            raise OperationFailed(f"no publisher key named {args.name!r} on the server")
        offset += len(rows)
    if match.get("revoked"):
        print(f"already revoked: {args.name} (key id {match.get('key_id')})")
        return 0
    client.post(f"/publisher-keys/{match['id']}/revoke", {})
    print(f"revoked {args.name}: key id {match.get('key_id')}")
    return 0


def load_keys_dir(directory: str) -> dict[str, trust.TrustedKey]:
    """A node's trusted-keys layout: `*.pub` trusted; `*.pub.revoked`, `revoked/*.pub` revoked.

    Unlike the agent (which logs and skips), the CLI refuses a directory with an
    unreadable or malformed key: the operator is right there to fix it.
    """
    base = Path(directory)
    if not base.is_dir():
        raise UsageError(f"--trusted-keys {directory}: is not a directory")
    found = [(p, False) for p in sorted(base.glob("*.pub"))]
    found += [(p, True) for p in sorted(base.glob("*.pub.revoked"))]
    found += [(p, True) for p in sorted(base.glob("revoked/*.pub"))]
    keys: dict[str, trust.TrustedKey] = {}
    for path, revoked in found:
        try:
            key = trust.load_trusted_key(
                read_bytes(path, "trusted key"), name=path.name.split(".pub")[0], revoked=revoked
            )
        except trust.MalformedKey as exc:
            raise UsageError(f"trusted key {path}: {exc}") from None
        if revoked or key.key_id not in keys:
            keys[key.key_id] = key  # revoked wins over trusted for the same key
    if not any(not k.revoked for k in keys.values()):
        raise UsageError(f"--trusted-keys {directory}: holds no trusted *.pub key")
    return keys


def private_key(path: str) -> bytes:
    pem = read_bytes(path, "--key")
    try:
        trust.public_key_pem(pem)
    except trust.MalformedKey as exc:
        raise UsageError(f"--key {path}: {exc}") from None
    mode = os.stat(path).st_mode & 0o077
    if mode:
        print(f"warning: {path} is readable by other users; chmod 600 it", file=sys.stderr)
    return pem
