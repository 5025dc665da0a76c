"""`aami script sign | verify | publish`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aami import trust
from aami.cli.api_client import ApiClient
from aami.cli.errors import OperationFailed, UsageError
from aami.cli.files import read_bytes, read_json, read_json_or_yaml, write_atomic
from aami.cli.keys_cmd import load_keys_dir, private_key
from aami.units import parse_duration


def sign(args: argparse.Namespace) -> int:
    content = read_bytes(args.file, "script")
    if not content:
        raise UsageError(f"script {args.file}: is empty")
    pem = private_key(args.key)
    schema: Any = {}
    if args.params_schema:
        schema = read_json_or_yaml(args.params_schema, "--params-schema")
        if not isinstance(schema, dict):
            raise UsageError(f"--params-schema {args.params_schema}: must hold a JSON object")
    try:
        signed = trust.sign_script(
            content,
            pem,
            name=args.name,
            version=args.version,
            interpreter=args.interpreter,
            timeout_seconds=whole_seconds(args.timeout, "--timeout"),
            params_schema=schema,
            expires_at=parse_expiry(args.expires, datetime.now(UTC)) if args.expires else None,
            run_as=args.run_as or None,
        )
    except trust.MalformedStatement as exc:
        raise UsageError(_flag_for(str(exc), args)) from None
    out = Path(args.out) if args.out else Path(f"{args.file}.signed.json")
    document = json.dumps(signed.to_json(), indent=2, sort_keys=True).encode() + b"\n"
    try:
        write_atomic(out, document, mode=0o644)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write ({exc.strerror})") from None
    statement = trust.ScriptStatement.from_payload(signed.envelope.payload)
    print(
        f"signed {statement.name} {statement.version} sha256 {statement.sha256} "
        f"key id {signed.envelope.signatures[0].keyid} -> {out}"
    )
    return 0


def verify(args: argparse.Namespace) -> int:
    signed = load_signed(args.signed)
    keys = load_keys_dir(args.trusted_keys)
    params = None
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise UsageError(f"--params: not valid JSON ({exc})") from None
        if not isinstance(params, dict):
            raise UsageError("--params: must be a JSON object")
    try:
        result = trust.verify_script(
            signed.envelope, signed.content, keys, now=datetime.now(UTC), run_as=args.run_as
        )
        if params is not None:
            # Script defaults first, as the server merges them; the statement is
            # authenticated by now, so reading its schema is safe.
            schema = result.statement.params_schema
            trust.validate_params(schema, {**trust.schema_defaults(schema), **params})
    except trust.Refusal as exc:
        raise OperationFailed(f"refused: {exc} ({exc.reason})") from None
    statement, key = result.statement, keys[result.key_id]
    expiry = statement.expires_at.isoformat() if statement.expires_at else "never"
    print(
        f"ok: {statement.name} {statement.version} sha256 {statement.sha256} "
        f"signed by {key.name or 'key'} ({result.key_id[:16]}), expires {expiry}"
    )
    return 0


def publish(args: argparse.Namespace, client: ApiClient) -> int:
    signed = load_signed(args.signed)
    reply = client.post("/scripts", signed.to_json())
    body = reply.body if isinstance(reply.body, dict) else {}
    what = "published" if reply.status == 201 else "unchanged (already published)"
    print(
        f"{what}: {body.get('name', '?')} {body.get('version', '?')} "
        f"sha256 {body.get('sha256', '?')} signed by key {body.get('key_id', '?')}"
    )
    return 0


def load_signed(path: str) -> trust.SignedScript:
    try:
        return trust.SignedScript.from_json(read_json(path, "signed script"))
    except trust.MalformedEnvelope as exc:
        raise UsageError(f"signed script {path}: {exc}") from None


def whole_seconds(text: str, flag: str) -> int:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if seconds < 1 or seconds != int(seconds):
        raise UsageError(f"{flag}: {text!r} must be a whole number of seconds, at least 1s")
    return int(seconds)


def parse_expiry(text: str, now: datetime) -> datetime:
    """`2027-01-01` (midnight UTC), an ISO 8601 time with zone, or a lifetime like `90d`."""
    try:
        return now + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--expires: {text!r} is not a date (2027-01-01), a time with zone "
            "(2027-01-01T12:00:00Z) or a lifetime (90d)"
        ) from None
    if moment.tzinfo is None:
        if len(text) > 10:
            raise UsageError(f"--expires: {text!r} needs a time zone, e.g. Z or +02:00")
        moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise UsageError(f"--expires: {text!r} is in the past")
    return moment


_FIELD_FLAGS = {
    "name": "--name",
    "version": "--version",
    "interpreter": "--interpreter",
    "timeout_seconds": "--timeout",
    "params_schema": "--params-schema",
    "run_as": "--run-as",
    "expires_at": "--expires",
}


def _flag_for(message: str, args: argparse.Namespace) -> str:
    """Prefix a statement error with the flag the operator used for that field."""
    head, _, rest = message.partition(":")
    if head.startswith("params_schema") and args.params_schema:
        return f"--params-schema {args.params_schema}: {message}"
    flag = _FIELD_FLAGS.get(head)
    return f"{flag}:{rest}" if flag and rest else message
