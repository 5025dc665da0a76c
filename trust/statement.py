"""The script statement: what a publisher signs about one script version.

The statement binds a script *name* and *version* to the SHA-256 of the exact content
bytes and to how the script may run: interpreter, default timeout, parameter schema,
optional expiry and optional allowed `run_as` users. It is carried as the payload of a
DSSE envelope (`trust.envelope`) whose payloadType is `PAYLOAD_TYPE`.

Parsing rules, and the attack each one stops:
  * Only ever parsed *after* the envelope's signature verified (see `trust.verify`):
    a JSON parser never sees unauthenticated bytes.
  * Unknown fields are refused: a field this verifier does not understand may be a
    restriction it would fail to enforce (fail closed, not open).
  * Duplicate JSON keys, NaN and Infinity are refused: two parsers must never read two
    different statements out of the same signed bytes.
  * Names are `[A-Za-z0-9][A-Za-z0-9._-]{0,99}`: a name becomes part of file names
    (state, metrics textfile), so no path separators, no leading dot.
  * Versions are exactly `X.Y.Z` without leading zeros, so each version has one
    spelling and "1.10.0" > "1.9.0" compares as numbers (rollback protection).
  * Interpreter: one of `INTERPRETERS`, or an absolute path without `.`/`..`
    components (no relative lookup an attacker could steer through PATH or cwd).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aami.trust.errors import MalformedStatement
from aami.trust.schema import check_schema

__all__ = [
    "INTERPRETERS",
    "MAX_TIMEOUT_SECONDS",
    "PAYLOAD_TYPE",
    "ScriptStatement",
    "canonical_json",
    "parse_version",
    "strict_json_loads",
]

PAYLOAD_TYPE = "application/vnd.aami.script-statement+json"
INTERPRETERS = frozenset({"sh", "bash", "python3", "perl"})
MAX_TIMEOUT_SECONDS = 7 * 86400

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ABS_PATH = re.compile(r"(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_EXPIRES = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_FIELDS = frozenset(
    {
        "name",
        "version",
        "sha256",
        "interpreter",
        "timeout_seconds",
        "params_schema",
        "expires_at",
        "run_as",
    }
)


def parse_version(text: str) -> tuple[int, int, int]:
    """(X, Y, Z) from "X.Y.Z"; raises MalformedStatement on anything else."""
    match = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise MalformedStatement(f"version: {text!r} is not X.Y.Z (e.g. 1.2.0)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def strict_json_loads(data: bytes) -> Any:
    """json.loads that refuses duplicate keys, NaN and Infinity (raises ValueError)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    return json.loads(
        data.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant
    )


@dataclass(frozen=True)
class ScriptStatement:
    """One signed script version. Constructing it validates every field."""

    name: str
    version: str
    sha256: str
    interpreter: str
    timeout_seconds: int
    params_schema: dict[str, Any] = field(hash=False)
    expires_at: datetime | None = None
    run_as: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise MalformedStatement(
                f"name: {self.name!r} must be 1-100 of A-Z a-z 0-9 . _ - "
                "starting with a letter or digit"
            )
        parse_version(self.version)
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise MalformedStatement("sha256: must be 64 lowercase hex characters")
        _check_interpreter(self.interpreter)
        timeout = self.timeout_seconds
        if not isinstance(timeout, int) or isinstance(timeout, bool):
            raise MalformedStatement("timeout_seconds: must be an integer")
        if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
            raise MalformedStatement(
                f"timeout_seconds: {timeout} is outside 1..{MAX_TIMEOUT_SECONDS}"
            )
        check_schema(self.params_schema)
        object.__setattr__(self, "expires_at", _normalise_expiry(self.expires_at))
        object.__setattr__(self, "run_as", _normalise_run_as(self.run_as))

    def to_json(self) -> dict[str, Any]:
        expires = self.expires_at
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "interpreter": self.interpreter,
            "timeout_seconds": self.timeout_seconds,
            "params_schema": self.params_schema,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else None,
            "run_as": list(self.run_as) if self.run_as is not None else None,
        }

    def to_payload(self) -> bytes:
        """The canonical JSON bytes that get signed."""
        return canonical_json(self.to_json())

    @classmethod
    def from_payload(cls, payload: bytes) -> ScriptStatement:
        """Parse authenticated payload bytes; raises MalformedStatement."""
        try:
            data = strict_json_loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MalformedStatement(f"statement is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedStatement("statement must be a JSON object")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            # Fail closed: an unknown field may be a restriction we would not enforce.
            raise MalformedStatement(f"statement has unknown field(s): {', '.join(unknown)}")
        missing = sorted(_FIELDS - set(data))
        if missing:
            raise MalformedStatement(f"statement lacks field(s): {', '.join(missing)}")
        if not isinstance(data["params_schema"], dict):
            raise MalformedStatement("params_schema: must be an object")
        run_as = data["run_as"]
        if run_as is not None and not isinstance(run_as, list):
            raise MalformedStatement("run_as: must be a list of user names or null")
        return cls(
            name=data["name"],
            version=data["version"],
            sha256=data["sha256"],
            interpreter=data["interpreter"],
            timeout_seconds=data["timeout_seconds"],
            params_schema=data["params_schema"],
            expires_at=_parse_expiry(data["expires_at"]),
            run_as=tuple(run_as) if run_as is not None else None,
        )


def _check_interpreter(interpreter: object) -> None:
    if not isinstance(interpreter, str):
        raise MalformedStatement("interpreter: must be a string")
    if interpreter in INTERPRETERS:
        return
    if interpreter.startswith("/") and _ABS_PATH.fullmatch(interpreter):
        parts = interpreter.split("/")[1:]
        if "." not in parts and ".." not in parts and len(interpreter) <= 255:
            return
    raise MalformedStatement(
        f"interpreter: {interpreter!r} must be one of {', '.join(sorted(INTERPRETERS))} "
        "or an absolute path such as /usr/bin/python3"
    )


def _normalise_expiry(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise MalformedStatement("expires_at: must be a timezone-aware datetime")
    # Whole seconds in UTC: the payload spelling has no fraction, so round-trips are exact.
    return value.astimezone(UTC).replace(microsecond=0)


def _parse_expiry(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _EXPIRES.fullmatch(value):
        raise MalformedStatement("expires_at: must be null or YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise MalformedStatement(f"expires_at: {value!r} is not a real date") from None


def _normalise_run_as(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise MalformedStatement("run_as: must be a list of user names or null")
    if not value:
        raise MalformedStatement("run_as: an empty list would allow nobody; use null for any")
    for user in value:
        if not isinstance(user, str) or not _USER.fullmatch(user):
            raise MalformedStatement(f"run_as: {user!r} is not a valid user name")
    if len(set(value)) != len(value):
        raise MalformedStatement("run_as: lists a user twice")
    return tuple(value)
