"""The signed-script document: the `FILE.signed.json` file and the upload body.

    {"format": "aami-signed-script/v1", "envelope": {<DSSE>}, "content": "<base64 of the script>"}

The content travels beside the envelope, not inside it: the statement signs the
content's SHA-256, so the agent can fetch content by hash (`/agent/scripts/{sha256}`)
and verify it with the same `trust.verify.verify_script` call. Parsing this document
authenticates nothing; only `verify_script` does.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aami.trust.envelope import Envelope, b64decode_strict, sign_envelope
from aami.trust.errors import EmptyContent, MalformedEnvelope
from aami.trust.statement import PAYLOAD_TYPE, ScriptStatement

__all__ = ["FORMAT", "SignedScript", "sign_script"]

FORMAT = "aami-signed-script/v1"
_FIELDS = frozenset({"format", "envelope", "content"})


@dataclass(frozen=True)
class SignedScript:
    envelope: Envelope
    content: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "envelope": self.envelope.to_json(),
            "content": base64.b64encode(self.content).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: object) -> SignedScript:
        """Parse the document (already JSON-decoded); raises MalformedEnvelope."""
        if not isinstance(data, dict):
            raise MalformedEnvelope(
                f"signed script must be a JSON object, got {type(data).__name__}"
            )
        if data.get("format") != FORMAT:
            raise MalformedEnvelope(f"format: must be {FORMAT!r}, got {data.get('format')!r}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise MalformedEnvelope(f"signed script has unknown field(s): {', '.join(unknown)}")
        missing = sorted(_FIELDS - set(data))
        if missing:
            raise MalformedEnvelope(f"signed script lacks field(s): {', '.join(missing)}")
        return cls(
            envelope=Envelope.from_json(data["envelope"]),
            content=b64decode_strict(data["content"], "content"),
        )


def sign_script(
    content: bytes,
    private_pem: bytes,
    *,
    name: str,
    version: str,
    interpreter: str = "bash",
    timeout_seconds: int = 60,
    params_schema: Mapping[str, Any] | None = None,
    expires_at: datetime | None = None,
    run_as: Iterable[str] | None = None,
) -> SignedScript:
    """Build the statement for `content`, sign it, and return the document.

    Raises MalformedStatement for a bad field (name, version, schema...), EmptyContent
    for an empty script and MalformedKey for a bad private key, so the author hears it
    at sign time rather than from every agent.
    """
    if not content:
        raise EmptyContent("content: an empty script cannot be signed")
    statement = ScriptStatement(
        name=name,
        version=version,
        sha256=hashlib.sha256(content).hexdigest(),
        interpreter=interpreter,
        timeout_seconds=timeout_seconds,
        params_schema=dict(params_schema or {}),
        expires_at=expires_at,
        run_as=tuple(run_as) if run_as is not None else None,
    )
    envelope = sign_envelope(PAYLOAD_TYPE, statement.to_payload(), private_pem)
    return SignedScript(envelope=envelope, content=bytes(content))
