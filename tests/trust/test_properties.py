"""Property tests: any single-byte change to content, payload or signature is refused."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from aami import trust
from tests.trust.conftest import CONTENT, NOW, make_publisher, sign

PUBLISHER = make_publisher("prop")
KEYS = {PUBLISHER.key.key_id: PUBLISHER.key}
SIGNED = sign(PUBLISHER)
ENVELOPE = SIGNED.envelope
SIG = ENVELOPE.signatures[0]


def _flip(data: bytes, index: int, xor: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ xor]) + data[index + 1 :]


def _refusal(envelope: trust.Envelope, content: bytes) -> str:
    try:
        trust.verify_script(envelope, content, KEYS, now=NOW)
    except trust.Refusal as exc:
        return exc.reason
    return "accepted"


def test_unchanged_is_accepted() -> None:
    assert _refusal(ENVELOPE, CONTENT) == "accepted"


byte_change = st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255))


@settings(max_examples=300, deadline=None)
@given(byte_change)
def test_any_content_byte_change_is_refused(change: tuple[int, int]) -> None:
    assert _refusal(ENVELOPE, _flip(CONTENT, *change)) == "hash_mismatch"


@settings(max_examples=300, deadline=None)
@given(byte_change)
def test_any_payload_byte_change_is_refused(change: tuple[int, int]) -> None:
    forged = replace(ENVELOPE, payload=_flip(ENVELOPE.payload, *change))
    assert _refusal(forged, CONTENT) == "bad_signature"


@settings(max_examples=300, deadline=None)
@given(byte_change)
def test_any_signature_byte_change_is_refused(change: tuple[int, int]) -> None:
    forged = replace(ENVELOPE, signatures=(replace(SIG, sig=_flip(SIG.sig, *change)),))
    assert _refusal(forged, CONTENT) == "bad_signature"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80))
def test_truncated_or_extended_signature_is_refused(junk: bytes) -> None:
    if junk == SIG.sig:
        return
    forged = replace(ENVELOPE, signatures=(replace(SIG, sig=junk),))
    assert _refusal(forged, CONTENT) == "bad_signature"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_keyid_change_is_refused(index: int, xor: int) -> None:
    keyid = SIG.keyid.encode()
    changed = _flip(keyid, index, xor).decode("latin-1")
    forged = replace(ENVELOPE, signatures=(replace(SIG, keyid=changed),))
    assert _refusal(forged, CONTENT) == "unknown_key"


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_arbitrary_json_never_escapes_as_another_exception(data: object) -> None:
    # Whatever a server sends in place of an envelope, the answer is a Refusal.
    try:
        trust.verify_script(data, CONTENT, KEYS, now=NOW)  # type: ignore[arg-type]
    except trust.Refusal:
        return
    raise AssertionError("accepted arbitrary JSON")
