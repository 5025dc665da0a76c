"""Server-facing commands: flag and environment handling that needs no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Workspace, aami


def test_server_and_token_are_required(ws: Workspace) -> None:
    result = aami("script", "publish", str(ws.signed))
    assert result.code == 2 and "--server: required (or set AAMI_SERVER)" in result.err
    result = aami("script", "publish", str(ws.signed), env={"AAMI_SERVER": "http://127.0.0.1:9"})
    assert result.code == 2 and "--token: required (or set AAMI_TOKEN)" in result.err


def test_environment_stands_in_for_flags(ws: Workspace) -> None:
    env = {"AAMI_SERVER": "http://127.0.0.1:9", "AAMI_TOKEN": "t"}
    result = aami("script", "publish", str(ws.signed), env=env)
    assert result.code == 1 and "cannot reach http://127.0.0.1:9" in result.err


@pytest.mark.parametrize("server", ["ftp://host", "localhost:8080", "file:///etc/passwd"])
def test_bad_server_url(ws: Workspace, server: str) -> None:
    result = aami("script", "publish", str(ws.signed), "--server", server, "--token", "t")
    assert result.code == 2 and "--server" in result.err


def test_missing_ca_file(ws: Workspace) -> None:
    args = ["--server", "https://127.0.0.1:9", "--token", "t", "--ca-file", "/nonexistent.pem"]
    result = aami("script", "publish", str(ws.signed), *args)
    assert result.code == 2 and "--ca-file /nonexistent.pem" in result.err


def test_register_refuses_a_private_key(ws: Workspace) -> None:
    args = ["--name", "ops", "--server", "http://127.0.0.1:9", "--token", "t"]
    result = aami("key", "register", str(ws.key), *args)
    assert result.code == 2 and "PRIVATE key" in result.err
    result = aami("key", "register", str(ws.root / "missing.pub"), *args)
    assert result.code == 2 and "no such file" in result.err


def test_policy_file_is_validated_before_any_request(tmp_path: Path) -> None:
    policy = tmp_path / "policies.yaml"
    policy.write_text(
        "policies:\n"
        "  - {name: a, script: s, scope: global, schedule: {mode: once}}\n"
        "  - {name: b, script: s, scope: global, schedule: {mode: once}}\n"
        "  - {name: c, script: s, scope: group, group: g,\n"
        "     schedule: {mode: interval, interval: often}}\n"
    )
    # The server address is unreachable: a request would fail with exit 1, not 2.
    args = ["--server", "http://127.0.0.1:9", "--token", "t"]
    result = aami("policy", "apply", str(policy), *args)
    assert result.code == 2
    assert f"{policy}: policies[2].schedule.interval:" in result.err
