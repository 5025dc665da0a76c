"""DSSE as others write it: securesystemslib (the reference implementation behind
in-toto and TUF) verifies our envelopes, and we verify envelopes it signed, with our
key id, with no key id, and (refused, as documented) with its own key id scheme.
docs/signing-scripts.md shows the same steps for an operator."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from aami import trust
from tests.harness import require
from tests.trust.conftest import CONTENT, NOW, Publisher, sign

try:
    from securesystemslib import dsse
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import CryptoSigner, SSlibKey
except ImportError:  # the dev extra is not installed: fail under CI, skip elsewhere
    dsse = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _securesystemslib() -> None:
    require(dsse is not None, "securesystemslib missing: pip install -e '.[dev]'")


def _sslib_key(publisher: Publisher, keyid: str | None) -> SSlibKey:
    key = SSlibKey.from_crypto(load_pem_public_key(publisher.public_pem), keyid=keyid)
    if keyid == "":  # from_crypto takes "" for "derive one"; a signer may give none
        key = SSlibKey("", key.keytype, key.scheme, key.keyval)
    return key


def _sslib_signed(publisher: Publisher, keyid: str | None) -> dict:
    """Our statement, signed by securesystemslib with `publisher`'s private key."""
    payload = sign(publisher).envelope.payload
    envelope = dsse.Envelope(payload=payload, payload_type=trust.PAYLOAD_TYPE, signatures={})
    signer = CryptoSigner(load_pem_private_key(publisher.private_pem, None),
                          _sslib_key(publisher, keyid))
    envelope.sign(signer)
    return json.loads(json.dumps(envelope.to_dict()))


def test_securesystemslib_verifies_our_envelope(alice) -> None:
    ours = sign(alice).envelope.to_json()
    key = _sslib_key(alice, alice.key.key_id)  # our key id: SHA-256 of the raw key
    accepted = dsse.Envelope.from_dict(json.loads(json.dumps(ours))).verify([key], 1)
    assert list(accepted) == [alice.key.key_id]

    tampered = json.loads(json.dumps(ours))
    tampered["payloadType"] = "application/vnd.other+json"
    with pytest.raises(VerificationError):
        dsse.Envelope.from_dict(tampered).verify([key], 1)


def test_we_verify_securesystemslib_envelopes(alice, trusted) -> None:
    named = _sslib_signed(alice, alice.key.key_id)
    assert named["signatures"][0]["keyid"] == alice.key.key_id
    assert trust.verify_script(named, CONTENT, trusted, now=NOW).key_id == alice.key.key_id

    keyless = _sslib_signed(alice, "")
    assert keyless["signatures"][0]["keyid"] == ""
    assert trust.verify_script(keyless, CONTENT, trusted, now=NOW).key_id == alice.key.key_id

    # securesystemslib's own key id (a hash of its key document) names no key of ours,
    # and a named signature is never tried against other keys: refused, as documented.
    own = _sslib_signed(alice, None)
    assert own["signatures"][0]["keyid"] not in trusted
    with pytest.raises(trust.UnknownKey):
        trust.verify_script(own, CONTENT, trusted, now=NOW)


def test_a_tampered_securesystemslib_envelope_is_refused(alice, trusted) -> None:
    keyless = _sslib_signed(alice, "")
    keyless["payload"] = sign(alice, version="9.9.9").envelope.to_json()["payload"]
    with pytest.raises(trust.UnknownKey):
        trust.verify_script(keyless, CONTENT, trusted, now=NOW)
