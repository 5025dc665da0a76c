"""Booted Debian 12 containers with systemd as PID 1 (systemd-nspawn --boot).

How these machines allow it (the host's PID 1 is not systemd, cgroups v1): see
tests/system/README.md. In short: `--register=no --keep-unit` (no host D-Bus), commands
run with `nsenter -t LEADER -a`, files are reached through /proc/LEADER/root.

Every container boots the same read-only Debian root (`make-rootfs.sh`, cached in
/var/cache/aami-systemd-root) with `--volatile=overlay`: what the container writes lands
in a tmpfs that vanishes with it, so a container costs no extraction and leaves nothing
behind. Containers share the host's network: each test picks its own ports.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("AAMI_SYSTEM_ROOT_CACHE", "/var/cache/aami-systemd-root"))
ARCHIVE = CACHE / "rootfs.tar"
BASE = CACHE / "base"
LOGS = Path(os.environ.get("AAMI_SYSTEM_LOGS", "/tmp/aami-system-logs"))


def prepare_base() -> Path:
    """The cached root, built on first use (~1 min) and unpacked next to its archive."""
    subprocess.run(["bash", str(HERE / "make-rootfs.sh"), str(ARCHIVE)], check=True,
                   timeout=900)
    stamp = BASE / ".from-archive"
    archive_id = f"{ARCHIVE.stat().st_mtime_ns}\n"
    if not stamp.is_file() or stamp.read_text() != archive_id:
        staging = CACHE / f".base-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        subprocess.run(["tar", "-C", str(staging), "--numeric-owner", "-xf", str(ARCHIVE)],
                       check=True, timeout=300)
        (staging / ".from-archive").write_text(archive_id)
        if BASE.exists():
            subprocess.run(["rm", "-rf", "--", str(BASE)], check=True)
        staging.rename(BASE)
    return BASE


@dataclass
class Run:
    code: int
    out: str
    err: str


class ContainerError(AssertionError):
    pass


class Container:
    """One booted container; use `booted()` so that it is always stopped."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.state = ""
        self.boot_seconds = 0.0

    def start(self, timeout: float = 120) -> None:
        try:
            self._boot(timeout)
        except BaseException:
            self.stop()  # never leave a half-booted container behind
            raise

    def _boot(self, timeout: float) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["systemd-nspawn", "-D", str(self.base), "--volatile=overlay", "--boot",
                 "--register=no", "--keep-unit", f"--machine={self.name}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        started = time.monotonic()
        deadline = started + timeout
        # The leader is nspawn's child that runs systemd: nspawn also forks short-lived
        # helpers, and entering one of those fails once it has exited.
        while not self.leader:
            self._check_alive(deadline)
            self.leader = self._find_leader()
            time.sleep(0.1)
        # Right after the leader appears the bus may not answer yet: retry.
        while True:
            self._check_alive(deadline)
            answer = self.run("systemctl is-system-running --wait", timeout=60)
            self.state = (answer.out + answer.err).strip()
            if answer.out.strip() in ("running", "degraded"):
                self.boot_seconds = time.monotonic() - started
                return
            time.sleep(0.2)

    def _find_leader(self) -> int:
        assert self.process is not None
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                                  text=True).stdout.split()
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return 0

    def _check_alive(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ContainerError(f"{self.name}: nspawn exited: {self.console()[-2000:]}")
        if time.monotonic() > deadline:
            raise ContainerError(f"{self.name}: not booted in time (systemctl says "
                                 f"{self.state!r}): {self.console()[-1500:]}")

    def console(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run(self, command: str, *, timeout: float = 120, input: str | None = None,
            env: dict[str, str] | None = None) -> Run:
        """`command` by /bin/sh inside the container, as root, in a clean environment."""
        assignments = [f"{k}={v}" for k, v in (env or {}).items()]
        argv = ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root", "LANG=C.UTF-8", *assignments, "/bin/sh", "-c", command]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  input=input)
        except subprocess.TimeoutExpired as exc:
            raise ContainerError(f"{self.name}: timed out after {timeout}s: {command}") from exc
        return Run(done.returncode, done.stdout, done.stderr)

    def ok(self, command: str, **kwargs: object) -> str:
        """Run `command`; fail the test with its output unless it exits 0."""
        result = self.run(command, **kwargs)  # type: ignore[arg-type]
        if result.code != 0:
            raise ContainerError(f"{self.name}: `{command}` exited {result.code}:\n"
                                 f"{result.out[-3000:]}\n{result.err[-3000:]}")
        return result.out

    def path(self, inside: str) -> Path:
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def put(self, inside: str, data: bytes, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)

    def main_pid(self, unit: str) -> int:
        return int(self.ok(f"systemctl show -P MainPID {shlex.quote(unit)}").strip())

    def stop(self, wait: bool = True) -> None:
        """Shut the container down cleanly; kill it if it does not go within 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        if not wait:
            return
        self.reap()

    def reap(self) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            if self.leader:
                with suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
            self.process.wait(timeout=20)


@contextmanager
def booted(name: str, base: Path) -> Iterator[Container]:
    container = Container(name, base)
    try:
        container.start()
        yield container
    finally:
        container.stop()
