"""AAMI's trust chain: publisher keys, signed script statements, verification.

Pure code: bytes, keys and a clock reading in; a typed result or a typed refusal out.
No file, network or database access here (a test enforces it), so the agent, the
server and the CLI all run the very same checks. Start reading at `trust.verify`.
"""

from aami.trust.envelope import Envelope, Signature, add_signature, pae, sign_envelope
from aami.trust.errors import (
    API_CODES,
    REASONS,
    BadSignature,
    ContentTooLarge,
    EmptyContent,
    Expired,
    HashMismatch,
    MalformedEnvelope,
    MalformedKey,
    MalformedStatement,
    NameMismatch,
    ParamsInvalid,
    PayloadTooLarge,
    Refusal,
    RevokedKey,
    Rollback,
    RunAsNotAllowed,
    TooManySignatures,
    TrustError,
    UnknownKey,
    Unsigned,
    WrongPayloadType,
)
from aami.trust.keys import (
    TrustedKey,
    generate_private_key_pem,
    key_id,
    load_trusted_key,
    public_key_pem,
)
from aami.trust.schema import check_schema, schema_defaults, validate_params
from aami.trust.signed_script import FORMAT, SignedScript, sign_script
from aami.trust.statement import INTERPRETERS, PAYLOAD_TYPE, ScriptStatement, parse_version
from aami.trust.verify import VerifiedScript, VerifyLimits, verify_script

__all__ = [
    "API_CODES",
    "FORMAT",
    "INTERPRETERS",
    "PAYLOAD_TYPE",
    "REASONS",
    "BadSignature",
    "ContentTooLarge",
    "EmptyContent",
    "Envelope",
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
    "ScriptStatement",
    "Signature",
    "SignedScript",
    "TooManySignatures",
    "TrustError",
    "TrustedKey",
    "UnknownKey",
    "Unsigned",
    "VerifiedScript",
    "VerifyLimits",
    "WrongPayloadType",
    "add_signature",
    "check_schema",
    "generate_private_key_pem",
    "key_id",
    "load_trusted_key",
    "pae",
    "parse_version",
    "public_key_pem",
    "schema_defaults",
    "sign_envelope",
    "sign_script",
    "validate_params",
    "verify_script",
]
