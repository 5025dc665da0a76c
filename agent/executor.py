"""Step 4 of a poll: run one verified script, and nothing more.

What each measure stops:

- The interpreter comes from the *signed* statement (never from the server's policy),
  resolved on a fixed PATH: the server cannot turn a bash check into `python -c`.
- Parameters reach the script only as data: JSON on stdin, `AAMI_PARAMS`, and
  `AAMI_PARAM_<NAME>` for scalars. They are never interpolated into a command line,
  so a schema-valid string such as `; rm -rf /` is just a string.
- A clean environment (no inherited variables: no agent token, no proxy secrets, no
  `LD_PRELOAD`), a fresh temporary working directory removed afterwards.
- Its own session and process group (`start_new_session=True`). On timeout the whole
  group gets SIGTERM, then SIGKILL after a grace period; once the main process has
  exited, anything it left in its group (a forked sleeping grandchild holding the
  output pipes) is killed too, so no run can outlive its timeout. A process that
  calls setsid() itself escapes the group; only a cgroup (systemd unit) can stop that.
- stdout and stderr are capped at `output_limit` each, keeping the tail (the end of a
  log is where the error is) with a marker saying how much was cut: a noisy script
  cannot exhaust the agent's memory or the server's database.
- `run_as`: when the agent is root, the child switches user with setgid, initgroups
  and setuid (the `user`/`group`/`extra_groups` of subprocess) before exec. When the
  agent is not root and run_as names another user, the run is refused clearly rather
  than silently run as the agent's own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def utc_now() -> str:
    """RFC 3339 UTC with a Z, millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ExecutionRefused(Exception):
    """The run cannot start (unknown user, not root for run_as, missing interpreter)."""


@dataclass(frozen=True)
class ExecutionRequest:
    execution_id: str
    script_name: str
    script_version: str
    content: bytes
    interpreter: str
    params: Mapping[str, Any]
    timeout: float
    run_as: str | None = None
    target_id: int | None = None
    hostname: str = ""


@dataclass(frozen=True)
class ExecutionResult:
    started_at: str
    finished_at: str
    duration_ms: int
    exit_code: int | None
    success: bool
    stdout: str
    stderr: str
    error_message: str | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class RunAsPlan:
    """How to start the child: the subprocess keyword arguments that switch user."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    uid: int | None = None
    gid: int | None = None


def param_env_name(name: str) -> str:
    return "AAMI_PARAM_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def build_env(req: ExecutionRequest) -> dict[str, str]:
    """The whole environment of a script: nothing inherited from the agent."""
    env = {
        "PATH": SAFE_PATH,
        "AAMI_TARGET_ID": "" if req.target_id is None else str(req.target_id),
        "AAMI_HOSTNAME": req.hostname,
        "AAMI_EXECUTION_ID": req.execution_id,
        "AAMI_SCRIPT_NAME": req.script_name,
        "AAMI_SCRIPT_VERSION": req.script_version,
        "AAMI_PARAMS": json.dumps(req.params, sort_keys=True),
    }
    for name, value in req.params.items():
        if isinstance(value, bool):
            env[param_env_name(name)] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            env[param_env_name(name)] = str(value)
    for key, text in env.items():
        _check_env(key, text)
    return env


def _check_env(key: str, text: str) -> None:
    """The kernel takes NUL-terminated bytes: a NUL or a lone surrogate in a parameter
    cannot be passed, and must fail the run with a clear message, not the runner."""
    if "\0" in text:
        raise ExecutionRefused(f"{key}: contains a NUL character, which cannot be passed "
                               "to a script in its environment")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise ExecutionRefused(f"{key}: not encodable for the environment "
                               "(a lone surrogate or an invalid character)") from None


def current_user() -> str:
    """The agent's own user name, or its numeric uid when the node has no passwd
    entry for it (a minimal chroot or container): never a crash."""
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def plan_run_as(run_as: str | None, *, euid: int, current_user: str) -> RunAsPlan:
    """Pure decision: which user switch (if any) `run_as` needs, or a refusal."""
    if not run_as or run_as == current_user:
        return RunAsPlan()
    if euid != 0:
        raise ExecutionRefused(
            f"run_as {run_as!r} needs the agent to run as root; it runs as {current_user!r}"
        )
    import pwd

    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        raise ExecutionRefused(f"run_as user {run_as!r} does not exist on this node") from None
    groups = os.getgrouplist(run_as, entry.pw_gid)
    return RunAsPlan(
        kwargs={"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups},
        uid=entry.pw_uid,
        gid=entry.pw_gid,
    )


def resolve_interpreter(interpreter: str) -> list[str]:
    words = shlex.split(interpreter)
    if not words:
        raise ExecutionRefused("the signed statement names no interpreter")
    program = words[0] if os.path.isabs(words[0]) else shutil.which(words[0], path=SAFE_PATH)
    if not program or not os.access(program, os.X_OK):
        raise ExecutionRefused(f"interpreter {words[0]!r} not found on {SAFE_PATH}")
    return [program, *words[1:]]


MASK_MARGIN = 4096  # bytes kept beyond the limit, so a secret across the cut is masked whole


class TailBuffer:
    """Keeps the last `limit` bytes (plus `MASK_MARGIN`) and counts what was cut.

    Secrets are masked *before* the output is cut to its limit: cut first, and a token
    straddling the cut would leave its tail unmasked in the report. So the buffer keeps
    a margin beyond the limit, `text()` masks all of it, then cuts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit - MASK_MARGIN
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self, mask: Callable[[str], str] | None = None) -> str:
        body = self.data.decode("utf-8", errors="replace")
        if mask is not None:
            body = mask(body)
        raw = body.encode()
        cut = self.dropped
        if len(raw) > self.limit:
            cut += len(raw) - self.limit
            # A character split by the cut is dropped whole.
            body = raw[-self.limit:].decode("utf-8", errors="ignore") if self.limit else ""
        if not cut:
            return body
        return f"[aami-agent: {cut} bytes cut, the last {self.limit} bytes follow]\n{body}"


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)


async def _pump(stream: asyncio.StreamReader | None, sink: TailBuffer) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        sink.feed(chunk)


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        stream.write(data)
        await stream.drain()
        stream.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the script does not read stdin: fine


def _prepare_workdir(
    req: ExecutionRequest, plan: RunAsPlan, work_root: str | None
) -> tuple[str, str]:
    workdir = tempfile.mkdtemp(prefix="aami-run-", dir=work_root)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", req.script_name) or "script"
    path = os.path.join(workdir, safe)
    with open(path, "wb") as handle:
        handle.write(req.content)
    os.chmod(path, 0o444)
    if plan.uid is not None:
        os.chown(workdir, plan.uid, plan.gid if plan.gid is not None else -1)
        # subprocess changes into cwd while still root, before it switches user; under
        # the shipped unit root has no CAP_DAC_OVERRIDE, so it needs the search bit on
        # a directory it no longer owns (names stay unlistable; found by tests/system).
        os.chmod(workdir, 0o711)  # noqa: S103 -- search only, no listing
    return workdir, path


async def execute(
    req: ExecutionRequest,
    *,
    output_limit: int,
    kill_grace: float,
    work_root: str | None = None,
    mask: Callable[[str], str] | None = None,
) -> ExecutionResult:
    """Run one script to completion or timeout. Never raises for script behaviour.
    `mask` hides secrets in the output (before it is cut to `output_limit`)."""
    started_at, t0 = utc_now(), time.monotonic()
    try:
        plan = plan_run_as(req.run_as, euid=os.geteuid(), current_user=current_user())
        argv = resolve_interpreter(req.interpreter)
        env = build_env(req)
    except ExecutionRefused as exc:
        return _result(started_at, t0, None, TailBuffer(0), TailBuffer(0), str(exc), False,
                       mask)
    try:
        workdir, script_path = _prepare_workdir(req, plan, work_root)
    except OSError as exc:  # full or read-only disk: a failed run, not a dead agent
        return _result(started_at, t0, None, TailBuffer(0), TailBuffer(0),
                       f"could not prepare a working directory: {exc}", False, mask)
    stdout, stderr = TailBuffer(output_limit), TailBuffer(output_limit)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, script_path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            **plan.kwargs,
        )
    except (OSError, ValueError) as exc:  # ValueError: anything else exec cannot take
        shutil.rmtree(workdir, ignore_errors=True)
        return _result(started_at, t0, None, stdout, stderr, f"could not start: {exc}", False,
                       mask)
    try:
        return await _supervise(proc, req, stdout, stderr, started_at, t0, kill_grace, mask)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _exited(proc: asyncio.subprocess.Process) -> int:
    """Wait for the main process itself to exit.

    `Process.wait()` also waits for every pipe to close, which a background grandchild
    holding stdout can delay forever; the return code is set as soon as the child is
    reaped, so poll it (10 ms rising to 200 ms: negligible CPU)."""
    delay = 0.01
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    return proc.returncode


async def _supervise(
    proc: asyncio.subprocess.Process,
    req: ExecutionRequest,
    stdout: TailBuffer,
    stderr: TailBuffer,
    started_at: str,
    t0: float,
    kill_grace: float,
    mask: Callable[[str], str] | None,
) -> ExecutionResult:
    readers = [
        asyncio.create_task(_pump(proc.stdout, stdout)),
        asyncio.create_task(_pump(proc.stderr, stderr)),
    ]
    feeder = asyncio.create_task(_feed(proc.stdin, json.dumps(dict(req.params)).encode()))
    timed_out = False
    try:
        await asyncio.wait_for(_exited(proc), req.timeout)
    except TimeoutError:
        timed_out = True
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(_exited(proc), kill_grace)
        except TimeoutError:
            _killpg(proc.pid, signal.SIGKILL)
            await _exited(proc)
    except asyncio.CancelledError:
        _killpg(proc.pid, signal.SIGKILL)  # agent shutting down: leave nothing behind
        raise
    finally:
        # Whatever the main process left in its group (background children holding
        # our pipes open) dies with it.
        _killpg(proc.pid, signal.SIGKILL)
        feeder.cancel()
        _, pending = await asyncio.wait(readers, timeout=2.0)
        for task in pending:
            task.cancel()
        if proc.stdin is not None:
            proc.stdin.close()
    code = proc.returncode
    if timed_out:
        error = f"timed out after {req.timeout:g}s; process group terminated"
    elif code is not None and code < 0:
        error = f"killed by signal {signal.Signals(-code).name}"
    else:
        error = None
    exit_code = code if code is not None and code >= 0 else None
    return _result(started_at, t0, exit_code, stdout, stderr, error, timed_out, mask)


def _result(
    started_at: str,
    t0: float,
    exit_code: int | None,
    stdout: TailBuffer,
    stderr: TailBuffer,
    error: str | None,
    timed_out: bool,
    mask: Callable[[str], str] | None = None,
) -> ExecutionResult:
    return ExecutionResult(
        started_at=started_at,
        finished_at=utc_now(),
        duration_ms=int((time.monotonic() - t0) * 1000),
        exit_code=exit_code,
        success=exit_code == 0 and error is None,
        stdout=stdout.text(mask),
        stderr=stderr.text(mask),
        error_message=error,
        timed_out=timed_out,
    )
