"""Key generation, key ids and the MalformedKey refusals."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from aami import trust
from aami.trust.keys import load_private_key


def test_generated_key_is_unencrypted_pkcs8_ed25519() -> None:
    pem = trust.generate_private_key_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(load_private_key(pem), ed25519.Ed25519PrivateKey)


def test_public_key_pem_is_spki() -> None:
    public = trust.public_key_pem(trust.generate_private_key_pem())
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_key_id_is_sha256_of_the_raw_public_key() -> None:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert trust.key_id(public_pem) == hashlib.sha256(raw).hexdigest()
    assert trust.key_id(public_pem) == trust.key_id(public_pem.replace(b"\n", b"\r\n"))


def test_distinct_keys_have_distinct_ids() -> None:
    ids = {trust.key_id(trust.public_key_pem(trust.generate_private_key_pem())) for _ in range(5)}
    assert len(ids) == 5


def test_load_trusted_key() -> None:
    public = trust.public_key_pem(trust.generate_private_key_pem())
    key = trust.load_trusted_key(public, name="ops", revoked=True)
    assert key == trust.TrustedKey(trust.key_id(public), public, "ops", True)


def _ecdsa_pems() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize(
    ("pem", "words"),
    [
        (b"", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM"),
        (b"x" * 5000, "at most"),
        (_ecdsa_pems()[1], "expected Ed25519"),
    ],
)
def test_malformed_public_keys(pem: bytes, words: str) -> None:
    with pytest.raises(trust.MalformedKey, match=words) as info:
        trust.key_id(pem)
    assert info.value.reason == "malformed_key"
    with pytest.raises(trust.MalformedKey):
        trust.load_trusted_key(pem)


def test_malformed_private_keys() -> None:
    with pytest.raises(trust.MalformedKey, match="expected Ed25519"):
        trust.public_key_pem(_ecdsa_pems()[0])
    with pytest.raises(trust.MalformedKey, match="not a PEM private key"):
        trust.public_key_pem(b"garbage")
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(trust.MalformedKey, match="encrypted"):
        trust.public_key_pem(encrypted)
    public = trust.public_key_pem(trust.generate_private_key_pem())
    with pytest.raises(trust.MalformedKey):
        trust.public_key_pem(public)  # a public key where a private one belongs
    with pytest.raises(trust.MalformedKey, match="must be PEM bytes"):
        trust.key_id("text")  # type: ignore[arg-type]
