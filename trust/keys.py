"""Publisher keys: Ed25519 key pairs in PEM form and the ids derived from them.

Threat model: a key id is only a *name* used to find a key; it is never trusted on
its own. It is derived from the key material (SHA-256 of the raw 32-byte public key)
so two parties computing it from the same key always agree, and a signature that
names key A but was made with key B fails verification against A. Only Ed25519 is
accepted: one algorithm means no algorithm-confusion attacks (an RSA or ECDSA key
passed where Ed25519 is expected is a `MalformedKey`, not a silent downgrade).

Private keys are generated and kept on the operator's workstation; this module only
turns bytes into bytes and never touches files.

Two libraries, for two jobs. Verifying (every node, at every run) uses PyNaCl's
libsodium: 2.4 MB resident against 8 MB for `cryptography`, which carries its own
OpenSSL, on a 40 MB budget (docs/agent.md). A public key needs no general parser for
that: an Ed25519 SubjectPublicKeyInfo has exactly one DER encoding (a fixed 12-byte
prefix and the raw 32-byte key), and anything else is refused. Signing and key
generation (the operator's CLI, the server, bundles) use `cryptography`, imported only
on those paths, so the agent never loads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nacl.exceptions
import nacl.signing

from aami.trust.errors import MalformedKey

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "MAX_PEM_BYTES",
    "TrustedKey",
    "generate_private_key_pem",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_trusted_key",
    "public_key_pem",
    "public_key_raw",
    "signature_valid",
]

# An Ed25519 PEM is ~120 bytes; anything far larger is not a key (denial of service).
MAX_PEM_BYTES = 4096
# SEQUENCE { SEQUENCE { OID 1.3.101.112 (Ed25519) } BIT STRING (32 bytes) } (RFC 8410)
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----"
# Algorithms an operator might hand us by mistake, named in the refusal.
_OTHER_ALGORITHMS = {bytes.fromhex("2a8648ce3d0201"): "an ECDSA key",
                     bytes.fromhex("2a864886f70d010101"): "an RSA key",
                     bytes.fromhex("2b6571"): "an Ed448 key",
                     bytes.fromhex("2b656e"): "an X25519 key"}


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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key(private_pem: bytes) -> Ed25519PrivateKey:
    """Parse an unencrypted PKCS8 PEM Ed25519 private key; raises MalformedKey."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    """The key as a `cryptography` object (for code that signs or builds bundles; the
    agent's path is `public_key_raw` and `signature_valid`); raises MalformedKey."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(public_key_raw(public_pem))


def public_key_raw(public_pem: bytes) -> bytes:
    """The raw 32-byte key of a SubjectPublicKeyInfo PEM Ed25519 public key; raises
    MalformedKey for anything else (another algorithm included: no confusion)."""
    _check_pem_bytes(public_pem, "public key")
    text = bytes(public_pem).strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        raise MalformedKey("public key is not a PEM public key")
    body = b"".join(text[len(_PEM_BEGIN):-len(_PEM_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedKey("public key is not a PEM public key (bad base64)") from None
    if len(der) == len(_ED25519_SPKI_PREFIX) + 32 and der.startswith(_ED25519_SPKI_PREFIX):
        return der[len(_ED25519_SPKI_PREFIX):]
    for oid, what in _OTHER_ALGORITHMS.items():
        if oid in der[:32]:
            raise MalformedKey(f"public key is {what}, expected Ed25519")
    raise MalformedKey("public key is not a PEM public key (not an Ed25519 "
                       "SubjectPublicKeyInfo)")


def signature_valid(public_pem: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is a valid Ed25519 signature of `message` by the key."""
    key = nacl.signing.VerifyKey(public_key_raw(public_pem))
    try:
        key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def public_key_pem(private_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of the public half of `private_pem`."""
    from cryptography.hazmat.primitives import serialization

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
    return hashlib.sha256(public_key_raw(public_pem)).hexdigest()


def load_trusted_key(public_pem: bytes, *, name: str = "", revoked: bool = False) -> TrustedKey:
    """A TrustedKey whose id is computed from the key itself; raises MalformedKey."""
    return TrustedKey(key_id=key_id(public_pem), public_pem=public_pem, name=name, revoked=revoked)


def _check_pem_bytes(pem: object, what: str) -> None:
    if not isinstance(pem, bytes | bytearray):
        raise MalformedKey(f"{what} must be PEM bytes, got {type(pem).__name__}")
    if len(pem) > MAX_PEM_BYTES:
        raise MalformedKey(f"{what} is {len(pem)} bytes; a PEM key is at most {MAX_PEM_BYTES}")
