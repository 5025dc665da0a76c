"""One test per refusal rule of verify_script, plus the accepting cases next to them."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aami import trust
from tests.trust.conftest import CONTENT, NOW, SCHEMA, Publisher, make_publisher, sign


def verify(envelope: object, content: bytes = CONTENT, keys: object = None, **kw: object):
    return trust.verify_script(envelope, content, keys, now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]


def refused(exc_type: type[trust.Refusal], reason: str, *args: object, **kw: object) -> str:
    with pytest.raises(exc_type) as info:
        verify(*args, **kw)
    assert info.value.reason == reason
    assert "\n" not in str(info.value)
    return str(info.value)


def test_good_script_is_accepted_with_everything_checked(signed, trusted, alice) -> None:
    result = verify(
        signed.envelope,
        keys=trusted,
        highest_accepted_version="1.1.9",
        params={"threshold_percent": 90, "mounts": ["/", "/data"]},
        run_as="aami-runner",
        expected_name="disk-usage",
    )
    assert result.key_id == alice.key.key_id
    assert result.content == CONTENT
    assert result.statement.name == "disk-usage"
    assert result.statement.version == "1.2.0"
    assert result.statement.run_as == ("aami-runner",)


def test_envelope_as_json_dict_is_accepted(signed, trusted) -> None:
    wire = json.loads(json.dumps(signed.to_json()))
    statement = verify(wire["envelope"], keys=trusted).statement
    assert statement.sha256 == trust.ScriptStatement.from_payload(signed.envelope.payload).sha256


def test_content_changed_after_signing(signed, trusted) -> None:
    message = refused(
        trust.HashMismatch, "hash_mismatch", signed.envelope, CONTENT + b"rm -rf /\n", trusted
    )
    assert "differs" in message


def test_statement_changed_after_signing(signed, trusted) -> None:
    statement = trust.ScriptStatement.from_payload(signed.envelope.payload)
    forged = replace(statement, run_as=("root",)).to_payload()
    envelope = replace(signed.envelope, payload=forged)
    refused(trust.BadSignature, "bad_signature", envelope, CONTENT, trusted)


def test_unknown_key(trusted) -> None:
    mallory = make_publisher("mallory")
    message = refused(trust.UnknownKey, "unknown_key", sign(mallory).envelope, CONTENT, trusted)
    assert mallory.key.key_id[:16] in message


def test_revoked_key(alice: Publisher, bob: Publisher) -> None:
    keys = {alice.key.key_id: replace(alice.key, revoked=True), bob.key.key_id: bob.key}
    message = refused(trust.RevokedKey, "revoked_key", sign(alice).envelope, CONTENT, keys)
    assert "alice" in message


def test_revoked_key_refuses_even_next_to_a_good_signature(alice, bob) -> None:
    both = trust.add_signature(sign(bob).envelope, alice.private_pem)
    keys = {alice.key.key_id: replace(alice.key, revoked=True), bob.key.key_id: bob.key}
    refused(trust.RevokedKey, "revoked_key", both, CONTENT, keys)


@pytest.mark.parametrize(
    ("now", "accepted"),
    [
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), True),
        (datetime(2027, 1, 1, 0, 0, tzinfo=UTC), True),
        (datetime(2027, 1, 1, 0, 5, tzinfo=UTC), True),  # inside the 300 s skew allowance
        (datetime(2027, 1, 1, 0, 5, 1, tzinfo=UTC), False),
        (datetime(2030, 1, 1, tzinfo=UTC), False),
    ],
)
def test_expiry_with_clock_skew_allowance(signed, trusted, now: datetime, accepted: bool) -> None:
    if accepted:
        assert verify(signed.envelope, keys=trusted, now=now)
    else:
        refused(trust.Expired, "expired", signed.envelope, CONTENT, trusted, now=now)


def test_skew_allowance_is_a_limit(signed, trusted) -> None:
    now = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    strict = trust.VerifyLimits(clock_skew_seconds=0)
    refused(trust.Expired, "expired", signed.envelope, CONTENT, trusted, now=now, limits=strict)


def test_no_expiry_never_expires(alice, trusted) -> None:
    envelope = sign(alice, expires_at=None).envelope
    assert verify(envelope, keys=trusted, now=datetime(2999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("highest", ["1.2.1", "1.10.0", "2.0.0"])
def test_version_rollback(signed, trusted, highest: str) -> None:
    message = refused(
        trust.Rollback,
        "rollback",
        signed.envelope,
        CONTENT,
        trusted,
        highest_accepted_version=highest,
        expected_name="disk-usage",
    )
    assert highest in message


@pytest.mark.parametrize("highest", ["1.2.0", "1.1.99", "0.9.0"])
def test_equal_or_lower_accepted_version_is_fine(signed, trusted, highest: str) -> None:
    assert verify(signed.envelope, keys=trusted, highest_accepted_version=highest)


def test_rollback_map_is_looked_up_by_the_signed_name(signed, trusted) -> None:
    history = {"disk-usage": "3.0.0", "other": "0.0.1"}
    refused(
        trust.Rollback,
        "rollback",
        signed.envelope,
        CONTENT,
        trusted,
        highest_accepted_version=history,
    )
    assert verify(signed.envelope, keys=trusted, highest_accepted_version={"other": "9.9.9"})


def test_relabelled_script_is_refused(signed, trusted) -> None:
    refused(
        trust.NameMismatch,
        "name_mismatch",
        signed.envelope,
        CONTENT,
        trusted,
        expected_name="gpu-health",
    )


def test_wrong_payload_type(alice, trusted) -> None:
    payload = trust.ScriptStatement.from_payload(sign(alice).envelope.payload).to_payload()
    envelope = trust.sign_envelope("application/vnd.in-toto+json", payload, alice.private_pem)
    refused(trust.WrongPayloadType, "wrong_payload_type", envelope, CONTENT, trusted)


def test_payload_type_swap_breaks_the_signature_too(signed, trusted, alice) -> None:
    # PAE covers the type: relabelling the type of a signed payload is a bad signature.
    other = "application/vnd.other+json"
    assert trust.pae(other, b"x") != trust.pae(trust.PAYLOAD_TYPE, b"x")
    # Claiming our type for a payload signed as another type: the signature fails.
    foreign = trust.sign_envelope(other, signed.envelope.payload, alice.private_pem)
    relabelled = replace(foreign, payload_type=trust.PAYLOAD_TYPE)
    refused(trust.BadSignature, "bad_signature", relabelled, CONTENT, trusted)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda e: e.update(payload="not base64!!"), "envelope.payload"),
        (lambda e: e.update(payload="aGVsbG8"), "envelope.payload"),  # missing padding
        (lambda e: e["signatures"][0].update(sig="%%%"), "envelope.signatures[0].sig"),
        (lambda e: e.pop("payloadType"), "payloadType"),
        (lambda e: e.pop("signatures"), "signatures"),
        (lambda e: e.update(signatures={}), "envelope.signatures"),
        (lambda e: e["signatures"][0].pop("sig"), "envelope.signatures[0]"),
        (lambda e: e["signatures"][0].update(keyid=7), "envelope.signatures[0].keyid"),
        (lambda e: e["signatures"][0].update(keyid="k" * 257), "envelope.signatures[0].keyid"),
        (lambda e: e["signatures"][0].update(extra=1), "envelope.signatures[0]"),
        (lambda e: e.update(extra=1), "extra"),
        (lambda e: e.update(payloadType=7), "envelope.payloadType"),
    ],
)
def test_malformed_envelope(signed, trusted, mutate, where: str) -> None:
    wire = json.loads(json.dumps(signed.envelope.to_json()))
    mutate(wire)
    message = refused(trust.MalformedEnvelope, "malformed_envelope", wire, CONTENT, trusted)
    assert where in message


@pytest.mark.parametrize("wire", [None, [], "envelope", 3])
def test_envelope_that_is_not_an_object(trusted, wire: object) -> None:
    refused(trust.MalformedEnvelope, "malformed_envelope", wire, CONTENT, trusted)


def _signed_payload(publisher: Publisher, payload: bytes) -> trust.Envelope:
    return trust.sign_envelope(trust.PAYLOAD_TYPE, payload, publisher.private_pem)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"name": "a", "name": "b"}', "duplicate key"),
        (b'{"timeout_seconds": NaN}', "NaN"),
    ],
)
def test_malformed_statement_json(alice, trusted, payload: bytes, words: str) -> None:
    message = refused(
        trust.MalformedStatement,
        "malformed_statement",
        _signed_payload(alice, payload),
        CONTENT,
        trusted,
    )
    assert words in message


def _statement_json(signed: trust.SignedScript) -> dict:
    return json.loads(signed.envelope.payload)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.pop("sha256"), "lacks field(s): sha256"),
        (lambda d: d.pop("run_as"), "lacks field(s): run_as"),
        (lambda d: d.update(surprise=True), "unknown field(s): surprise"),
        (lambda d: d.update(version="1.2"), "version"),
        (lambda d: d.update(version="01.2.0"), "version"),
        (lambda d: d.update(name="../etc/passwd"), "name"),
        (lambda d: d.update(sha256="ABC"), "sha256"),
        (lambda d: d.update(interpreter="python"), "interpreter"),
        (lambda d: d.update(interpreter="/usr/../bin/sh"), "interpreter"),
        (lambda d: d.update(timeout_seconds=0), "timeout_seconds"),
        (lambda d: d.update(timeout_seconds=True), "timeout_seconds"),
        (lambda d: d.update(expires_at="2027-01-01"), "expires_at"),
        (lambda d: d.update(expires_at="2027-02-30T00:00:00Z"), "expires_at"),
        (lambda d: d.update(run_as=[]), "run_as"),
        (lambda d: d.update(run_as="root"), "run_as"),
        (lambda d: d.update(params_schema={"type": "object", "oneOf": []}), "oneOf"),
    ],
)
def test_malformed_statement_fields(alice, signed, trusted, change, words: str) -> None:
    data = _statement_json(signed)
    change(data)
    envelope = _signed_payload(alice, json.dumps(data).encode())
    message = refused(trust.MalformedStatement, "malformed_statement", envelope, CONTENT, trusted)
    assert words in message


def test_several_signatures_one_bad_is_refused(alice, bob, trusted) -> None:
    envelope = trust.add_signature(sign(alice).envelope, bob.private_pem)
    assert verify(envelope, keys=trusted).key_id == alice.key.key_id
    broken = bytes([envelope.signatures[1].sig[0] ^ 1]) + envelope.signatures[1].sig[1:]
    tampered = replace(
        envelope, signatures=(envelope.signatures[0], replace(envelope.signatures[1], sig=broken))
    )
    message = refused(trust.BadSignature, "bad_signature", tampered, CONTENT, trusted)
    assert "bob" in message


def test_several_signatures_unknown_extra_signer_is_ignored(alice, trusted) -> None:
    stranger = make_publisher("stranger")
    envelope = trust.add_signature(sign(alice).envelope, stranger.private_pem)
    assert verify(envelope, keys=trusted).key_id == alice.key.key_id


def test_unknown_signature_that_is_garbage_is_ignored(signed, trusted, alice) -> None:
    junk = trust.Signature(keyid="someone-else", sig=b"\x00" * 3)
    envelope = replace(signed.envelope, signatures=(junk, *signed.envelope.signatures))
    assert verify(envelope, keys=trusted).key_id == alice.key.key_id


def test_signature_claiming_a_trusted_key_made_by_another(signed, trusted, bob) -> None:
    # Keyid says bob, bytes are alice's: verification against bob's key fails.
    relabelled = replace(signed.envelope.signatures[0], keyid=bob.key.key_id)
    envelope = replace(signed.envelope, signatures=(relabelled,))
    refused(trust.BadSignature, "bad_signature", envelope, CONTENT, trusted)


def test_duplicate_keyids_are_malformed(signed, trusted) -> None:
    sig = signed.envelope.signatures[0]
    envelope = replace(signed.envelope, signatures=(sig, sig))
    refused(trust.MalformedEnvelope, "malformed_envelope", envelope, CONTENT, trusted)


def test_no_signature(signed, trusted) -> None:
    refused(trust.Unsigned, "unsigned", replace(signed.envelope, signatures=()), CONTENT, trusted)


def test_too_many_signatures(signed, trusted) -> None:
    extra = tuple(trust.Signature(keyid=f"k{i}", sig=b"x") for i in range(8))
    envelope = replace(signed.envelope, signatures=(*signed.envelope.signatures, *extra))
    refused(trust.TooManySignatures, "too_many_signatures", envelope, CONTENT, trusted)


def test_empty_content(signed, trusted) -> None:
    refused(trust.EmptyContent, "empty_content", signed.envelope, b"", trusted)


def test_content_too_large(alice, trusted) -> None:
    big = b"#" * (1024 * 1024 + 1)
    envelope = sign(alice, content=big).envelope
    refused(trust.ContentTooLarge, "content_too_large", envelope, big, trusted)
    roomy = trust.VerifyLimits(max_content_bytes=2 * 1024 * 1024)
    assert verify(envelope, big, trusted, limits=roomy)


def test_payload_too_large(signed, trusted) -> None:
    tight = trust.VerifyLimits(max_payload_bytes=100)
    refused(
        trust.PayloadTooLarge, "payload_too_large", signed.envelope, CONTENT, trusted, limits=tight
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"threshold_percent": 150},
            "params.threshold_percent: 150 is greater than the maximum 100",
        ),
        ({"threshold_percent": 0}, "params.threshold_percent: 0 is less than the minimum 1"),
        ({}, "params.threshold_percent: is required"),
        ({"threshold_percent": "80"}, "params.threshold_percent: '80' is not of type integer"),
        ({"threshold_percent": True}, "is not of type integer"),
        (
            {"threshold_percent": 80, "mounts": ["/", "data"]},
            "params.mounts[1]: 'data' does not match",
        ),
        ({"threshold_percent": 80, "cmd": "rm -rf /"}, "params.cmd: is not a declared parameter"),
    ],
)
def test_params_outside_schema(signed, trusted, params: dict, message: str) -> None:
    text = refused(
        trust.ParamsInvalid, "params_invalid", signed.envelope, CONTENT, trusted, params=params
    )
    assert message in text


def test_run_as_not_allowed(signed, trusted) -> None:
    message = refused(
        trust.RunAsNotAllowed,
        "run_as_not_allowed",
        signed.envelope,
        CONTENT,
        trusted,
        run_as="root",
    )
    assert "aami-runner" in message


def test_run_as_unrestricted_statement_allows_anyone(alice, trusted) -> None:
    assert verify(sign(alice, run_as=None).envelope, keys=trusted, run_as="root")


def test_naive_now_is_a_caller_bug(signed, trusted) -> None:
    with pytest.raises(RuntimeError):
        verify(signed.envelope, keys=trusted, now=datetime(2026, 1, 1))


def test_trusted_key_map_keyed_wrongly_is_a_caller_bug(signed, alice, bob) -> None:
    with pytest.raises(RuntimeError):
        verify(signed.envelope, keys={alice.key.key_id: bob.key})


def test_every_reason_has_its_own_class_and_code() -> None:
    assert len(set(trust.REASONS)) == len(trust.REASONS) >= 14
    assert set(trust.API_CODES) == set(trust.REASONS)
    assert all(code == code.upper() for code in trust.API_CODES.values())


def test_checks_run_in_the_documented_order(alice, trusted) -> None:
    # An unknown signer AND changed content: the signature check comes first, so the
    # payload of an unauthenticated envelope is never even parsed.
    mallory = make_publisher("mallory")
    envelope = _signed_payload(mallory, b"{definitely not json")
    refused(trust.UnknownKey, "unknown_key", envelope, CONTENT, trusted)
    expired_and_changed = sign(alice, expires_at=NOW - timedelta(days=30)).envelope
    refused(trust.HashMismatch, "hash_mismatch", expired_and_changed, b"other", trusted)


def test_urlsafe_base64_is_accepted(signed, trusted) -> None:
    wire = signed.envelope.to_json()
    wire["payload"] = base64.urlsafe_b64encode(signed.envelope.payload).decode()
    wire["signatures"][0]["sig"] = base64.urlsafe_b64encode(
        signed.envelope.signatures[0].sig
    ).decode()
    assert verify(wire, keys=trusted)


def test_schema_defaults_match_the_signed_schema() -> None:
    assert trust.schema_defaults(SCHEMA) == {"threshold_percent": 80}
