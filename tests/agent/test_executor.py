"""The executor through real subprocesses: env, stdin, caps, timeouts, process groups."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from aami.agent.executor import (
    ExecutionRefused,
    ExecutionRequest,
    TailBuffer,
    build_env,
    execute,
    param_env_name,
    plan_run_as,
)
from tests.harness import wait_until


def run(content: str, *, params: dict | None = None, timeout: float = 10, limit: int = 65536,
        interpreter: str = "bash", run_as: str | None = None, grace: float = 1.0):
    req = ExecutionRequest(
        execution_id="11111111-2222-3333-4444-555555555555",
        script_name="probe",
        script_version="1.2.3",
        content=content.encode(),
        interpreter=interpreter,
        params=params or {},
        timeout=timeout,
        run_as=run_as,
        target_id=7,
        hostname="node-01",
    )
    return asyncio.run(execute(req, output_limit=limit, kill_grace=grace))


def test_success_and_exit_codes() -> None:
    ok = run("echo hello; echo oops >&2; exit 0")
    assert ok.success and ok.exit_code == 0
    assert ok.stdout == "hello\n" and ok.stderr == "oops\n"
    bad = run("exit 3")
    assert not bad.success and bad.exit_code == 3 and bad.error_message is None


def test_environment_is_clean_and_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAMI_TOKEN", "must-not-leak")
    monkeypatch.setenv("LD_PRELOAD", "/evil.so")
    result = run("env", params={"threshold_percent": 80, "mount": "/data", "deep": {"a": 1},
                                "dry-run": True})
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "AAMI_TOKEN" not in env and "LD_PRELOAD" not in env and "HOME" not in env
    assert env["AAMI_TARGET_ID"] == "7"
    assert env["AAMI_HOSTNAME"] == "node-01"
    assert env["AAMI_EXECUTION_ID"] == "11111111-2222-3333-4444-555555555555"
    assert env["AAMI_SCRIPT_NAME"] == "probe" and env["AAMI_SCRIPT_VERSION"] == "1.2.3"
    assert env["AAMI_PARAM_THRESHOLD_PERCENT"] == "80"
    assert env["AAMI_PARAM_MOUNT"] == "/data"
    assert env["AAMI_PARAM_DRY_RUN"] == "true"
    assert "AAMI_PARAM_DEEP" not in env  # only scalars become variables
    assert json.loads(env["AAMI_PARAMS"])["deep"] == {"a": 1}
    assert set(env) - {"PWD", "SHLVL", "_"} == set(build_env(ExecutionRequest(
        "x", "probe", "1", b"", "bash", {"threshold_percent": 80, "mount": "/data",
                                         "deep": {"a": 1}, "dry-run": True}, 1)))


def test_params_arrive_on_stdin_as_data_not_code() -> None:
    evil = "$(touch /tmp/aami-pwned); rm -rf /"
    result = run("cat", params={"name": evil})
    assert json.loads(result.stdout) == {"name": evil}
    assert not os.path.exists("/tmp/aami-pwned")


def test_fresh_working_directory_removed_afterwards() -> None:
    result = run("pwd; ls -A")
    workdir, *files = result.stdout.split()
    assert Path(workdir).name.startswith("aami-run-")
    assert files == ["probe"]
    assert not Path(workdir).exists()


def test_python_interpreter_from_statement() -> None:
    result = run("import sys, json; print(json.load(sys.stdin)['n'] * 2)", params={"n": 21},
                 interpreter="python3")
    assert result.stdout.strip() == "42", result


def test_missing_interpreter_is_a_clear_failure() -> None:
    result = run("echo hi", interpreter="no-such-interpreter")
    assert not result.success and result.exit_code is None
    assert "no-such-interpreter" in (result.error_message or "")


def test_timeout_kills_the_whole_group_including_a_sleeping_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"(sleep 300 & echo $! > {pidfile}; wait) & \n trap '' TERM\n sleep 300\n"
    started = time.monotonic()
    # 3 s: time for the subshell to write its pidfile even on a loaded machine.
    result = run(script, timeout=3, grace=0.5)
    assert time.monotonic() - started < 20  # not the 300 s of the sleeps
    assert result.timed_out and not result.success
    assert "timed out after 3s" in (result.error_message or "")
    grandchild = int(pidfile.read_text())
    wait_until(lambda: not _alive(grandchild), timeout=10,
               what="the forked grandchild gone after the timeout")


def test_background_child_left_behind_does_not_hang_and_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    started = time.monotonic()
    result = run(f"sleep 300 & echo $! > {pidfile}; echo done", timeout=30)
    assert time.monotonic() - started < 20, "a background child holding stdout hung the run"
    assert result.success and result.stdout == "done\n"
    wait_until(lambda: not _alive(int(pidfile.read_text())), timeout=10,
               what="the background child killed")


def test_output_is_capped_keeping_the_tail_with_a_marker() -> None:
    result = run("for i in $(seq 1 2000); do echo line-$i; done; echo errs >&2", limit=100)
    assert result.stdout.startswith("[aami-agent: ")
    assert "bytes cut" in result.stdout
    assert result.stdout.endswith("line-2000\n")
    body = result.stdout.split("\n", 1)[1]
    assert len(body.encode()) == 100
    assert result.stderr == "errs\n"


def test_tail_buffer_counts_dropped_bytes() -> None:
    from aami.agent.executor import MASK_MARGIN

    buf = TailBuffer(5)
    for chunk in (b"abc", b"defg", b"hi" * MASK_MARGIN):
        buf.feed(chunk)
    assert len(buf.data) == 5 + MASK_MARGIN and buf.dropped == 7 + 2 * MASK_MARGIN - 5 - MASK_MARGIN
    assert buf.text().endswith("\nihihi") and f"{buf.dropped + MASK_MARGIN} bytes cut" in buf.text()


def test_output_is_masked_before_it_is_cut() -> None:
    """A secret straddling the cut must not leave its tail in the report."""
    from aami.agent.logging_setup import Masker

    secret = "s3cr3t-token-ABCDEFGHIJKLMNOP"
    masker = Masker()
    masker.add_secret(secret)
    script = f"printf 'x%.0s' $(seq 1 50); printf '{secret}'; printf 'y%.0s' $(seq 1 90)"
    req = ExecutionRequest("id-mask", "m", "1.0.0", script.encode(), "bash", {}, 30)
    result = asyncio.run(execute(req, output_limit=100, kill_grace=1, mask=masker.mask))
    body = result.stdout.split("\n", 1)[1]
    assert body.endswith("y" * 90) and len(body.encode()) == 100
    assert "KLMNOP" not in result.stdout and "*" in body  # the cut fell inside the secret


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_as_switches_user_when_root() -> None:
    result = run("id -un; id -u", run_as="nobody")
    assert result.success, result
    assert result.stdout.split() == ["nobody", "65534"]


def test_run_as_refused_clearly_when_not_root() -> None:
    with pytest.raises(ExecutionRefused, match="needs the agent to run as root"):
        plan_run_as("aami-runner", euid=1000, current_user="alice")
    assert plan_run_as("alice", euid=1000, current_user="alice").kwargs == {}
    assert plan_run_as(None, euid=1000, current_user="alice").kwargs == {}


def test_run_as_unknown_user_refused() -> None:
    with pytest.raises(ExecutionRefused, match="does not exist"):
        plan_run_as("no-such-user-aami", euid=0, current_user="root")


def test_param_env_names() -> None:
    assert param_env_name("threshold-percent") == "AAMI_PARAM_THRESHOLD_PERCENT"
    assert param_env_name("a.b c") == "AAMI_PARAM_A_B_C"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
