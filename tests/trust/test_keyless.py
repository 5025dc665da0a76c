"""DSSE signatures without a keyid (optional in DSSE): tried against the trusted keys,
within VerifyLimits.max_keyless_tries (trust/verify.py, step 4)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aami import trust
from tests.trust.conftest import CONTENT, NOW, Publisher, make_publisher, sign


def _keyless(publisher: Publisher) -> trust.Envelope:
    envelope = sign(publisher).envelope
    return replace(envelope, signatures=tuple(replace(s, keyid="") for s in
                                              envelope.signatures))


def _verify(envelope: trust.Envelope, keys: dict[str, trust.TrustedKey],
            **kw: object) -> trust.VerifiedScript:
    return trust.verify_script(envelope, CONTENT, keys, now=NOW, **kw)  # type: ignore[arg-type]


def test_keyless_signature_by_a_trusted_key_is_accepted(alice, trusted) -> None:
    assert _verify(_keyless(alice), trusted).key_id == alice.key.key_id


def test_keyless_signature_by_a_stranger_is_unknown(trusted) -> None:
    with pytest.raises(trust.UnknownKey, match="without keyid matched none"):
        _verify(_keyless(make_publisher("mallory")), trusted)


def test_keyless_signature_by_a_revoked_key_is_an_alarm(alice, trusted) -> None:
    carol = make_publisher("carol", revoked=True)
    keys = {**trusted, carol.key.key_id: carol.key}
    with pytest.raises(trust.RevokedKey, match="without keyid"):
        _verify(_keyless(carol), keys)


def test_keyless_signature_next_to_a_named_bad_one_is_still_refused(alice, bob, trusted
                                                                    ) -> None:
    # A trusted key's failing signature is never outvoted, keyless helpers included.
    forged = replace(sign(alice).envelope.signatures[0], keyid=bob.key.key_id)
    envelope = replace(_keyless(alice), signatures=(*_keyless(alice).signatures, forged))
    with pytest.raises(trust.BadSignature):
        _verify(envelope, trusted)


def test_the_tries_are_bounded(alice) -> None:
    """With more trusted keys than tries, a keyless signature by a key that sorts
    after the budget is not found: the cost stays bounded whatever the key set."""
    others = [make_publisher(f"k{i}") for i in range(20)]
    keys = {p.key.key_id: p.key for p in [*others, alice]}
    position = sorted(keys).index(alice.key.key_id)
    limits = trust.VerifyLimits(max_keyless_tries=position + 1)
    assert _verify(_keyless(alice), keys, limits=limits).key_id == alice.key.key_id
    with pytest.raises(trust.UnknownKey, match="at most"):
        _verify(_keyless(alice), keys, limits=trust.VerifyLimits(max_keyless_tries=position))
