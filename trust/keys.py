"""Publisher keys: Ed25519 key pairs in PEM form and the ids derived from them.

Threat model: a key id is only a *name* used to find a key; it is never trusted on
its own. It is derived from the key material (SHA-256 of the raw 32-byte public key)
so two parties computing it from the same key always agree, and a signature that
names key A but was made with key B fails verification against A. Only Ed25519 is
accepted: one algorithm means no algorithm-confusion attacks (an RSA or ECDSA key
passed where Ed25519 is expected is a `MalformedKey`, not a silent downgrade).

Private keys are generated and kept on the operator's workstation; this module only
turns bytes into bytes and never touches files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from aami.trust.errors import MalformedKey

__all__ = [
    "MAX_PEM_BYTES",
    "TrustedKey",
    "generate_private_key_pem",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_trusted_key",
    "public_key_pem",
]

# An Ed25519 PEM is ~120 bytes; anything far larger is not a key (denial of service).
MAX_PEM_BYTES = 4096


@dataclass(frozen=True)
class TrustedKey:
    """A public key a verifier trusts, with its id and whether it was revoked.

    A revoked key stays in the trusted set on purpose: it lets the verifier say
    `revoked_key` (an alarm) instead of `unknown_key` (often a configuration slip).
    """

    key_id: str
    public_pem: bytes
    name: str = ""
    revoked: bool = False


def generate_private_key_pem() -> bytes:
    """A new Ed25519 private key, PKCS8 PEM, unencrypted (the caller writes it 0600)."""
    return Ed25519PrivateKey.generate().private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key(private_pem: bytes) -> Ed25519PrivateKey:
    """Parse an unencrypted PKCS8 PEM Ed25519 private key; raises MalformedKey."""
    _check_pem_bytes(private_pem, "private key")
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except TypeError as exc:  # the key is encrypted
        raise MalformedKey("private key is encrypted; AAMI needs an unencrypted key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedKey("private key is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        # Algorithm confusion: only Ed25519 is ever accepted.
        raise MalformedKey(f"private key is {type(key).__name__}, expected Ed25519")
    return key


def load_public_key(public_pem: bytes) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM Ed25519 public key; raises MalformedKey."""
    _check_pem_bytes(public_pem, "public key")
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedKey("public key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        # Algorithm confusion: only Ed25519 is ever accepted.
        raise MalformedKey(f"public key is {type(key).__name__}, expected Ed25519")
    return key


def public_key_pem(private_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of the public half of `private_pem`."""
    return (
        load_private_key(private_pem)
        .public_key()
        .public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )


def key_id(public_pem: bytes) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte Ed25519 public key."""
    raw = load_public_key(public_pem).public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()


def load_trusted_key(public_pem: bytes, *, name: str = "", revoked: bool = False) -> TrustedKey:
    """A TrustedKey whose id is computed from the key itself; raises MalformedKey."""
    return TrustedKey(key_id=key_id(public_pem), public_pem=public_pem, name=name, revoked=revoked)


def _check_pem_bytes(pem: object, what: str) -> None:
    if not isinstance(pem, bytes | bytearray):
        raise MalformedKey(f"{what} must be PEM bytes, got {type(pem).__name__}")
    if len(pem) > MAX_PEM_BYTES:
        raise MalformedKey(f"{what} is {len(pem)} bytes; a PEM key is at most {MAX_PEM_BYTES}")
