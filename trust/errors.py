"""Typed refusals: one exception class per rule, each with a stable reason code.

Two families, as in python-tuf's ngclient:

* `TrustError` and its subclasses: the data that came from outside (an envelope,
  a statement, a key, parameters) broke a rule. `reason` is a stable snake_case code
  that the agent uses as the `reason` label of `aami_agent_scripts_refused_total` and
  in the security event it reports; the server maps it to an HTTP error code
  (see `HTTP_CODES`). `str(exc)` is one line meant for an operator.
* Misuse by the caller (a naive `now`, a trusted-key map whose keys do not match the
  keys' ids) is a plain `RuntimeError`: a bug in our code, not an attack.
"""

from __future__ import annotations

__all__ = [
    "API_CODES",
    "REASONS",
    "BadSignature",
    "ContentTooLarge",
    "EmptyContent",
    "Expired",
    "HashMismatch",
    "MalformedEnvelope",
    "MalformedKey",
    "MalformedStatement",
    "NameMismatch",
    "ParamsInvalid",
    "PayloadTooLarge",
    "Refusal",
    "RevokedKey",
    "Rollback",
    "RunAsNotAllowed",
    "TooManySignatures",
    "TrustError",
    "UnknownKey",
    "Unsigned",
    "WrongPayloadType",
]


class TrustError(Exception):
    """Root of every "bad data from outside" error raised by the trust package."""

    reason: str = "trust_error"

    def __init__(self, message: str) -> None:
        # One line, always: these messages end up in CLI output, logs and HTTP bodies.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class Refusal(TrustError):
    """Base of every refusal: the script (or key, or parameters) must not be used."""

    reason = "refused"


class MalformedEnvelope(Refusal):
    """The DSSE envelope or signed-script wrapper is not well-formed."""

    reason = "malformed_envelope"


class MalformedStatement(Refusal):
    """The signed statement (or a parameter schema) is not well-formed."""

    reason = "malformed_statement"


class MalformedKey(Refusal):
    """A key is not a well-formed Ed25519 key in PEM form."""

    reason = "malformed_key"


class WrongPayloadType(Refusal):
    """The envelope carries something other than an AAMI script statement."""

    reason = "wrong_payload_type"


class PayloadTooLarge(Refusal):
    """The envelope's payload exceeds `VerifyLimits.max_payload_bytes`."""

    reason = "payload_too_large"


class TooManySignatures(Refusal):
    """The envelope carries more signatures than `VerifyLimits.max_signatures`."""

    reason = "too_many_signatures"


class Unsigned(Refusal):
    """The envelope carries no signature at all."""

    reason = "unsigned"


class UnknownKey(Refusal):
    """No signature was made by a key this verifier trusts."""

    reason = "unknown_key"


class RevokedKey(Refusal):
    """A signature names a trusted key that has been revoked."""

    reason = "revoked_key"


class BadSignature(Refusal):
    """A signature names a trusted key but does not verify."""

    reason = "bad_signature"


class HashMismatch(Refusal):
    """The content's SHA-256 differs from the signed statement's."""

    reason = "hash_mismatch"


class EmptyContent(Refusal):
    """The script content is empty."""

    reason = "empty_content"


class ContentTooLarge(Refusal):
    """The script content exceeds `VerifyLimits.max_content_bytes`."""

    reason = "content_too_large"


class Expired(Refusal):
    """The statement's expiry (plus the clock-skew allowance) has passed."""

    reason = "expired"


class Rollback(Refusal):
    """The statement's version is lower than the highest accepted for that name."""

    reason = "rollback"


class NameMismatch(Refusal):
    """The statement names another script than the one the caller expected."""

    reason = "name_mismatch"


class ParamsInvalid(Refusal):
    """Parameters do not validate against the signed schema. `path` names the field."""

    reason = "params_invalid"

    def __init__(self, message: str, *, path: str = "params") -> None:
        super().__init__(message)
        self.path = path


class RunAsNotAllowed(Refusal):
    """The user the script would run as is not in the statement's `run_as` list."""

    reason = "run_as_not_allowed"


# Every reason code, for metrics (pre-declared label values) and documentation.
REASONS: tuple[str, ...] = tuple(
    cls.reason
    for cls in (
        MalformedEnvelope,
        MalformedStatement,
        MalformedKey,
        WrongPayloadType,
        PayloadTooLarge,
        TooManySignatures,
        Unsigned,
        UnknownKey,
        RevokedKey,
        BadSignature,
        HashMismatch,
        EmptyContent,
        ContentTooLarge,
        Expired,
        Rollback,
        NameMismatch,
        ParamsInvalid,
        RunAsNotAllowed,
    )
)


# The stable API code of each refusal reason (the server's error bodies carry it;
# the HTTP status is the server's business: server/http_errors.py).
API_CODES: dict[str, str] = {reason: reason.upper() for reason in REASONS} | {
    "bad_signature": "SIGNATURE_INVALID",
    "rollback": "VERSION_NOT_HIGHER",
}
