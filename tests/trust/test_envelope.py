"""DSSE: the pre-authentication encoding against the spec's vectors, and round trips."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from aami import trust
from aami.trust.envelope import b64decode_strict

# secure-systems-lab/dsse protocol.md, "Test Vectors".
SPEC_TYPE = "http://example.com/HelloWorld"
SPEC_BODY = b"hello world"
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
SPEC_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
SPEC_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
SPEC_SIG = (
    "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
)


def test_pae_matches_the_spec_vector() -> None:
    assert trust.pae(SPEC_TYPE, SPEC_BODY) == SPEC_PAE


def test_spec_signature_verifies_over_our_pae() -> None:
    # The spec signed its PAE with ECDSA P-256; if our PAE differed by one byte, the
    # spec's own signature would not verify over it.
    public = ec.EllipticCurvePublicNumbers(SPEC_X, SPEC_Y, ec.SECP256R1()).public_key()
    raw = b64decode_strict(SPEC_SIG, "sig")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, trust.pae(SPEC_TYPE, SPEC_BODY), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("payload_type", "body", "expected"),
    [
        ("", b"", b"DSSEv1 0  0 "),
        ("t", b"\x00 \xff", b"DSSEv1 1 t 3 \x00 \xff"),
        # Lengths are in bytes, not characters.
        ("\u00e9", b"ab", b"DSSEv1 2 \xc3\xa9 2 ab"),
        (trust.PAYLOAD_TYPE, b"{}", b"DSSEv1 42 " + trust.PAYLOAD_TYPE.encode() + b" 2 {}"),
    ],
)
def test_pae_encoding(payload_type: str, body: bytes, expected: bytes) -> None:
    assert trust.pae(payload_type, body) == expected


def test_spec_envelope_without_keyid_parses_and_round_trips() -> None:
    # keyid is optional in DSSE: absent (or "") means "try the trusted keys".
    spec = {
        "payload": "aGVsbG8gd29ybGQ=",
        "payloadType": SPEC_TYPE,
        "signatures": [{"sig": SPEC_SIG}],
    }
    envelope = trust.Envelope.from_json(spec)
    assert envelope.signatures[0].keyid == ""
    assert envelope.to_json() == spec
    assert trust.Envelope.from_json({**spec, "signatures": [{"keyid": "", "sig": SPEC_SIG}]}
                                    ) == envelope


def test_envelope_round_trips_through_json(signed) -> None:
    wire = json.loads(json.dumps(signed.envelope.to_json()))
    assert set(wire) == {"payloadType", "payload", "signatures"}
    assert trust.Envelope.from_json(wire) == signed.envelope


def test_signed_script_round_trips_through_json(signed) -> None:
    wire = json.loads(json.dumps(signed.to_json()))
    assert wire["format"] == "aami-signed-script/v1"
    assert trust.SignedScript.from_json(wire) == signed


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(format="v0"), "format"),
        (lambda d: d.pop("content"), "lacks field(s): content"),
        (lambda d: d.update(content="***"), "content: is not valid base64"),
        (lambda d: d.update(extra=1), "unknown field(s): extra"),
        (lambda d: d.update(envelope=[]), "envelope must be a JSON object"),
    ],
)
def test_malformed_signed_script(signed, change, words: str) -> None:
    wire = json.loads(json.dumps(signed.to_json()))
    change(wire)
    with pytest.raises(
        trust.MalformedEnvelope, match=words.replace("(", r"\(").replace(")", r"\)")
    ):
        trust.SignedScript.from_json(wire)


def test_sign_envelope_signs_pae_with_the_named_key(alice) -> None:
    envelope = trust.sign_envelope("x/y", b"body", alice.private_pem)
    (signature,) = envelope.signatures
    assert signature.keyid == alice.key.key_id
    assert len(signature.sig) == 64  # Ed25519


def test_sign_script_refuses_empty_content(alice) -> None:
    with pytest.raises(trust.EmptyContent):
        trust.sign_script(b"", alice.private_pem, name="x", version="1.0.0")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"version": "v1"}, "version"),
        ({"name": "has space"}, "name"),
        ({"interpreter": "ruby"}, "interpreter"),
        ({"timeout_seconds": 10**9}, "timeout_seconds"),
        ({"params_schema": {"type": "array"}}, "top level"),
    ],
)
def test_sign_script_refuses_bad_fields_at_sign_time(alice, fields: dict, words: str) -> None:
    kwargs = {"name": "x", "version": "1.0.0", **fields}
    with pytest.raises(trust.MalformedStatement, match=words):
        trust.sign_script(b"echo", alice.private_pem, **kwargs)


@pytest.mark.parametrize(
    "text", ["aGVsbG8", "aGVs bG8=", "aG==aG==", "a-b+", "aGVsbG8=\n", "é", "=", 7]
)
def test_base64_is_decoded_strictly(text: object) -> None:
    with pytest.raises(trust.MalformedEnvelope):
        b64decode_strict(text, "field")


def test_both_base64_alphabets_are_accepted() -> None:
    # DSSE: "verifiers MUST accept either" standard or URL-safe base64.
    assert b64decode_strict("+/8=", "f") == b64decode_strict("-_8=", "f") == b"\xfb\xff"
