"""DSSE v1 envelopes: a typed payload plus signatures over its pre-authentication encoding.

Format (https://github.com/secure-systems-lab/dsse, protocol.md and envelope.md):

    {"payloadType": "<type>", "payload": "<base64>",
     "signatures": [{"keyid": "<key id>", "sig": "<base64>"}]}

`keyid` is optional in DSSE (an unauthenticated hint): absent or "" both parse to
`Signature.keyid == ""`, which the verifier tries against its trusted keys
(trust/verify.py, step 4). We always write one.

The signature covers PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body,
with LEN the ASCII decimal byte length. Signing the type as well as the body stops a
type-confusion attack (bytes signed as one kind of document accepted as another), and
the length prefixes stop boundary-shifting between type and body.

This module only parses the *wrapper*: it never interprets the payload. Base64 is
decoded strictly (standard or URL-safe alphabet, with padding, nothing else) so that
garbage is refused here rather than half-decoded.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from aami.trust.errors import MalformedEnvelope
from aami.trust.keys import key_id, load_private_key, public_key_pem

__all__ = ["Envelope", "Signature", "add_signature", "b64decode_strict", "pae", "sign_envelope"]

_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_ENVELOPE_FIELDS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})  # sig required, keyid optional
MAX_KEYID_LENGTH = 256


@dataclass(frozen=True)
class Signature:
    keyid: str  # "" when the signer gave none
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {**({"keyid": s.keyid} if s.keyid else {}),
                 "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    @classmethod
    def from_json(cls, data: object) -> Envelope:
        """Parse the DSSE JSON object (already decoded); raises MalformedEnvelope."""
        if not isinstance(data, dict):
            raise MalformedEnvelope(f"envelope must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _ENVELOPE_FIELDS)
        if unknown:
            raise MalformedEnvelope(f"envelope has unknown field(s): {', '.join(unknown)}")
        missing = sorted(_ENVELOPE_FIELDS - set(data))
        if missing:
            raise MalformedEnvelope(f"envelope lacks field(s): {', '.join(missing)}")
        payload_type = data["payloadType"]
        if not isinstance(payload_type, str) or not payload_type:
            raise MalformedEnvelope("envelope.payloadType: must be a non-empty string")
        payload = b64decode_strict(data["payload"], "envelope.payload")
        raw_signatures = data["signatures"]
        if not isinstance(raw_signatures, list):
            raise MalformedEnvelope("envelope.signatures: must be a list")
        signatures = tuple(
            _parse_signature(item, f"envelope.signatures[{i}]")
            for i, item in enumerate(raw_signatures)
        )
        return cls(payload_type=payload_type, payload=payload, signatures=signatures)


def _parse_signature(item: object, path: str) -> Signature:
    if not isinstance(item, dict):
        raise MalformedEnvelope(f"{path}: must be an object")
    if "sig" not in item or not set(item) <= _SIGNATURE_FIELDS:
        raise MalformedEnvelope(f"{path}: must have the field sig and optionally keyid, "
                                "nothing else")
    keyid = item.get("keyid", "")
    if not isinstance(keyid, str) or len(keyid) > MAX_KEYID_LENGTH:
        raise MalformedEnvelope(f"{path}.keyid: must be a string of at most "
                                f"{MAX_KEYID_LENGTH} characters")
    return Signature(keyid=keyid, sig=b64decode_strict(item["sig"], f"{path}.sig"))


def b64decode_strict(text: object, path: str) -> bytes:
    """Decode standard or URL-safe base64 with padding; raises MalformedEnvelope.

    DSSE verifiers must accept both alphabets; mixing them, missing padding, whitespace
    or any other character is refused.
    """
    if not isinstance(text, str) or not text.isascii():
        raise MalformedEnvelope(f"{path}: must be a base64 string")
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise MalformedEnvelope(f"{path}: mixes the standard and URL-safe base64 alphabets")
        text = text.translate(_URLSAFE_TO_STANDARD)
    try:
        # validate=True: only the alphabet, padding only at the end, length a multiple of 4.
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope(f"{path}: is not valid base64") from None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of (type, body)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_envelope(payload_type: str, payload: bytes, private_pem: bytes) -> Envelope:
    """A new envelope carrying one Ed25519 signature by `private_pem`."""
    return add_signature(
        Envelope(payload_type=payload_type, payload=payload, signatures=()), private_pem
    )


def add_signature(envelope: Envelope, private_pem: bytes) -> Envelope:
    """The same envelope with one more signature (e.g. a second publisher)."""
    signature = Signature(
        keyid=key_id(public_key_pem(private_pem)),
        sig=load_private_key(private_pem).sign(pae(envelope.payload_type, envelope.payload)),
    )
    return Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=(*envelope.signatures, signature),
    )
