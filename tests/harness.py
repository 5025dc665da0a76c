"""Real processes for tests: an `aami-server serve` subprocess and a small HTTP client.

Nothing here fakes the server; tests talk to it over real HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent


def require(condition: bool, message: str) -> None:
    """Skip a test whose prerequisite is missing; under CI (CI=true) fail instead:
    CI installs everything the suite needs, so a missing piece there is a defect."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition"
               ) -> float:
    """Poll `predicate` every 0.1 s until it is true and return the seconds it took;
    fail the test after `timeout` seconds, naming `what` was awaited."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out after {timeout}s: {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def http(method: str, url: str, *, token: str | None = None, json_body: Any = None,
         data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> Reply:
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers))


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one of the console scripts (`aami-server`, `aami`, `aami-agent`)."""
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}: {result.stderr}")
    return result


@dataclass
class ServerProcess:
    database_url: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextmanager
    def start(cls, database_url: str, directory: Path, *, extra_args: tuple[str, ...] = (),
              config: str | None = None) -> Iterator[ServerProcess]:
        port = free_port()
        log_path = directory / f"server-{port}.log"
        args = [str(BIN / "aami-server"), "serve", "--database", database_url,
                "--listen", f"127.0.0.1:{port}", *extra_args]
        if config:
            args += ["--config", config]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        server = cls(database_url, port, directory, process, log_path)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if http("GET", self.url + "/health/ready", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def token(self, role: str = "admin") -> str:
        """An admin API token of `role`, made once per role through the real CLI."""
        if role not in self._tokens:
            out = run_cli("aami-server", "token", "create", "--role", role, "--name",
                          f"test-{role}", "--database", self.database_url)
            self._tokens[role] = out.stdout.strip()
        return self._tokens[role]

    def bootstrap_token(self, *extra: str) -> str:
        out = run_cli("aami-server", "bootstrap-token", "create", "--database",
                      self.database_url, *extra)
        return out.stdout.strip()

    def api(self, method: str, path: str, *, role: str | None = "admin",
            token: str | None = None, **kwargs: Any) -> Reply:
        if token is None and role is not None:
            token = self.token(role)
        return http(method, self.url + path, token=token, **kwargs)


def child_pids(parent: int) -> set[int]:
    """The live children of process `parent`."""
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return {int(pid) for pid in out.stdout.split()}


def listening_sockets(port: int) -> set[str]:
    """Inodes of the IPv4 sockets listening on `port`, from /proc/net/tcp."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes
