"""The one verification entry point: may this content run under this statement?

`verify_script` is what the agent calls before caching a script and again before every
run, what the server calls on upload, and what `aami script verify` calls. It takes
bytes, the trusted keys and the current time, and returns a `VerifiedScript` or raises
one `Refusal` subclass whose `reason` names the rule that failed.

Threat model. The envelope, the content and the parameters come from the config
server, which may be compromised, or from a network attacker in between. The trusted
keys and the highest accepted versions come from the node itself (installed keys, the
agent's own state) and are trusted. The verifier must ensure that only bytes a
trusted publisher signed run, in the way the publisher allowed. Order of checks:

 1. Parse the DSSE wrapper only (no payload parsing yet); enforce size limits first,
    so an attacker cannot make us hash or verify megabytes of junk.
 2. payloadType must be ours (type confusion).
 3. Content must be non-empty and within limits (denial of service; an empty
    "script" that succeeds would hide a missing check).
 4. Signatures (forgery, key compromise). The rule, for every signature present:
      - a signature whose keyid is a *revoked* trusted key refuses the whole envelope
        (RevokedKey), even if another signature is good: a revoked key signing is an
        alarm, not noise;
      - a signature whose keyid is a trusted key but which does not verify refuses the
        whole envelope (BadSignature): a known key's signature that fails means
        tampering or corruption, and we never "vote" around it;
      - a signature whose keyid is not in the trusted set is ignored (another
        organisation may countersign), and duplicate keyids are malformed;
      - a signature without keyid (optional in DSSE) is tried against the trusted
        keys, revoked ones included, in key id order, at most
        `VerifyLimits.max_keyless_tries` verifications per envelope (resource
        exhaustion: a key set of any size costs a bounded amount); one that verifies
        counts as that key's (RevokedKey if the key is revoked), one that does not is
        ignored like an unknown signer's;
      - at least one signature must verify with a trusted, unrevoked key, else
        UnknownKey (or Unsigned when there is no signature at all).
    The keyid only selects which key to try (DSSE: never a security decision on its
    own): acceptance always needs a signature that verifies. Refusals on a keyid alone
    are fail-closed, and anyone able to add a signature could equally corrupt the
    envelope. This is stricter than DSSE's (t, n) rule, which skips failing signatures.
    The payload is parsed only after this step: no JSON parser sees unauthenticated
    bytes.
 5. Statement well-formed (MalformedStatement), and naming the expected script
    (NameMismatch: a server relabelling another signed script).
 6. SHA-256 of the content equals the statement's (content swapped after signing).
 7. Expiry, with `VerifyLimits.clock_skew_seconds` of allowance: a statement whose
    `expires_at` is T is refused when now > T + skew (replay of a withdrawn script).
 8. Version not lower than the highest accepted for this name (rollback to an older,
    vulnerable version). An equal version is accepted: it is the same release.
 9. run_as user allowed by the statement (privilege escalation by policy).
10. Parameters valid against the signed schema (a compromised server can only pick
    schema-valid inputs).

`now` is read once by the caller and passed in, so all time checks in one
verification agree; it must be timezone-aware.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aami.trust.envelope import Envelope, Signature, pae
from aami.trust.errors import (
    BadSignature,
    ContentTooLarge,
    EmptyContent,
    Expired,
    HashMismatch,
    MalformedEnvelope,
    NameMismatch,
    PayloadTooLarge,
    RevokedKey,
    Rollback,
    RunAsNotAllowed,
    TooManySignatures,
    UnknownKey,
    Unsigned,
    WrongPayloadType,
)
from aami.trust.keys import TrustedKey, key_id, signature_valid
from aami.trust.schema import check_schema, schema_defaults, validate_params
from aami.trust.statement import PAYLOAD_TYPE, ScriptStatement, parse_version

__all__ = [
    "VerifiedScript",
    "VerifyLimits",
    "check_schema",
    "schema_defaults",
    "validate_params",
    "verify_script",
]


@dataclass(frozen=True)
class VerifyLimits:
    """Hard limits, checked before any expensive work."""

    max_content_bytes: int = 1024 * 1024
    max_payload_bytes: int = 64 * 1024
    max_signatures: int = 8
    # Verifications spent on signatures without keyid, per envelope (step 4).
    max_keyless_tries: int = 16
    # Allowance for node clocks that run behind or ahead of the publisher's: a
    # statement stays valid until expires_at + clock_skew_seconds.
    clock_skew_seconds: int = 300


@dataclass(frozen=True)
class VerifiedScript:
    statement: ScriptStatement
    key_id: str  # the trusted key whose signature was accepted (first one, by order)
    content: bytes


def verify_script(
    envelope: Envelope | Mapping[str, Any],
    content: bytes,
    trusted_keys: Mapping[str, TrustedKey],
    *,
    now: datetime,
    highest_accepted_version: str | Mapping[str, str] | None = None,
    params: Mapping[str, object] | None = None,
    run_as: str | None = None,
    expected_name: str | None = None,
    limits: VerifyLimits = VerifyLimits(),  # frozen, so sharing the default is safe
) -> VerifiedScript:
    """Verify everything; return the verified statement or raise a Refusal.

    `trusted_keys` maps key id -> TrustedKey (revoked keys included, flagged).
    `highest_accepted_version` is either the highest version accepted so far for this
    script's name (then pass `expected_name` too, so the comparison cannot be steered to
    another name's history) or a map name -> highest version, looked up by the signed
    name. `params` and `run_as` are checked only when given.
    """
    if now.utcoffset() is None:
        raise RuntimeError("verify_script: `now` must be timezone-aware")
    env = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
    _check_wrapper(env, content, limits)
    signer = _check_signatures(env, trusted_keys, limits)
    # Authenticated from here on: parse the payload.
    statement = ScriptStatement.from_payload(env.payload)
    if expected_name is not None and statement.name != expected_name:
        # Relabelling: a server presenting one signed script as another.
        raise NameMismatch(f"statement is for {statement.name!r}, expected {expected_name!r}")
    digest = hashlib.sha256(content).hexdigest()
    if not hmac.compare_digest(digest, statement.sha256):
        # Content swapped or altered after signing.
        raise HashMismatch(
            f"content sha256 {digest[:12]}... differs from the signed {statement.sha256[:12]}..."
        )
    _check_expiry(statement, now, limits)
    _check_rollback(statement, highest_accepted_version)
    if run_as is not None and statement.run_as is not None and run_as not in statement.run_as:
        # Privilege escalation: a policy choosing a user the publisher did not allow.
        raise RunAsNotAllowed(
            f"run_as {run_as!r} is not allowed; the statement allows {', '.join(statement.run_as)}"
        )
    if params is not None:
        # A compromised server may only choose inputs the signed schema admits.
        validate_params(statement.params_schema, params)
    return VerifiedScript(statement=statement, key_id=signer, content=content)


def _check_wrapper(env: Envelope, content: bytes, limits: VerifyLimits) -> None:
    if len(env.payload) > limits.max_payload_bytes:
        # Resource exhaustion: refuse before hashing or parsing.
        raise PayloadTooLarge(
            f"payload is {len(env.payload)} bytes; the limit is {limits.max_payload_bytes}"
        )
    if len(env.signatures) > limits.max_signatures:
        # Resource exhaustion: each signature costs a verification.
        raise TooManySignatures(
            f"envelope has {len(env.signatures)} signatures; the limit is {limits.max_signatures}"
        )
    if env.payload_type != PAYLOAD_TYPE:
        # Type confusion: bytes signed as another kind of document.
        raise WrongPayloadType(f"payloadType is {env.payload_type!r}, expected {PAYLOAD_TYPE!r}")
    if not isinstance(content, bytes | bytearray):
        raise RuntimeError("verify_script: `content` must be bytes")
    if not content:
        raise EmptyContent("script content is empty")
    if len(content) > limits.max_content_bytes:
        # Resource exhaustion on the node (disk, memory, hashing).
        raise ContentTooLarge(
            f"content is {len(content)} bytes; the limit is {limits.max_content_bytes}"
        )


def _check_signatures(env: Envelope, trusted_keys: Mapping[str, TrustedKey],
                      limits: VerifyLimits) -> str:
    """Apply the signature rule (module docstring, step 4); return the signer's key id."""
    if not env.signatures:
        raise Unsigned("envelope carries no signature")
    keyids = [s.keyid for s in env.signatures if s.keyid]
    if len(set(keyids)) != len(keyids):
        raise MalformedEnvelope("envelope names the same keyid in two signatures")
    known = [(s, trusted_keys[s.keyid]) for s in env.signatures if s.keyid in trusted_keys]
    for _signature, key in known:
        if key.revoked:
            # Key compromise: whatever else signed it, a revoked key's signature is an alarm.
            raise RevokedKey(f"signed by revoked key {_label(key)}")
    message = pae(env.payload_type, env.payload)
    for signature, key in known:
        if not _signature_valid(signature, key, message):
            # Forgery or tampering: a trusted key's signature that fails is never outvoted.
            raise BadSignature(f"signature by {_label(key)} does not verify")
    signers = [key.key_id for _signature, key in known]
    keyless = [s for s in env.signatures if not s.keyid]
    signers += _keyless_signers(keyless, trusted_keys, message, limits)
    if not signers:
        # Forgery with an unknown key, or a node missing the publisher's key.
        ids = ", ".join(k[:16] for k in keyids)
        tried = (f"; {len(keyless)} signature(s) without keyid matched none of the "
                 f"trusted keys tried (at most {limits.max_keyless_tries})" if keyless else "")
        raise UnknownKey(f"no signature by a trusted key (signed by {ids or 'no keyid'}{tried})")
    return signers[0]


def _keyless_signers(signatures: list[Signature], trusted_keys: Mapping[str, TrustedKey],
                     message: bytes, limits: VerifyLimits) -> list[str]:
    """Key ids of the trusted keys that made these keyid-less signatures, trying keys
    in key id order within the envelope's budget of verifications."""
    budget = limits.max_keyless_tries
    candidates = [trusted_keys[k] for k in sorted(trusted_keys)]
    signers: list[str] = []
    for signature in signatures:
        for key in candidates:
            if budget <= 0:
                return signers
            budget -= 1
            if _verifies(signature.sig, key, message):
                if key.revoked:
                    # Key compromise, as for a named signature: an alarm.
                    raise RevokedKey(f"signed (without keyid) by revoked key {_label(key)}")
                signers.append(key.key_id)
                break
    return signers


def _signature_valid(signature: Signature, key: TrustedKey, message: bytes) -> bool:
    if key_id(key.public_pem) != signature.keyid:
        # Our own bug: the trusted-key map must be keyed by each key's real id.
        raise RuntimeError(f"trusted_keys entry {signature.keyid!r} holds a different key")
    return _verifies(signature.sig, key, message)


def _verifies(sig: bytes, key: TrustedKey, message: bytes) -> bool:
    return signature_valid(key.public_pem, sig, message)


def _check_expiry(statement: ScriptStatement, now: datetime, limits: VerifyLimits) -> None:
    expires = statement.expires_at
    if expires is not None and now > expires + timedelta(seconds=limits.clock_skew_seconds):
        # Replay of a statement the publisher meant to retire.
        raise Expired(
            f"statement expired at {expires.isoformat()} "
            f"(allowing {limits.clock_skew_seconds}s of clock skew)"
        )


def _check_rollback(statement: ScriptStatement, highest: str | Mapping[str, str] | None) -> None:
    if isinstance(highest, Mapping):
        highest = highest.get(statement.name)
    if highest is None:
        return
    if parse_version(statement.version) < parse_version(highest):
        # Rollback: an older, perhaps vulnerable, version replayed by the server.
        raise Rollback(
            f"{statement.name} {statement.version} is lower than the accepted {highest}"
        )


def _label(key: TrustedKey) -> str:
    return f"{key.name} ({key.key_id[:16]})" if key.name else key.key_id[:16]
