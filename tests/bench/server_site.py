"""The server side of the load benchmark: K `aami-server` processes, optionally on
HTTPS with a site CA's certificate, and enough open files for one connection per
simulated agent."""

from __future__ import annotations

import argparse
import resource
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.harness import (
    BIN,
    ServerProcess,
    child_pids,
    free_port,
    listening_sockets,
    socket_inodes,
)


def raise_open_files_limit(needed: int) -> int:
    """Every simulated agent holds a connection (and so does the server, per agent):
    raise this process's RLIMIT_NOFILE soft limit to the hard limit, and the hard
    limit too when it is short and we may (root). Set before the servers are
    spawned, so they inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(hard, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < needed:
            raise SystemExit(f"server_load: --agents needs about {needed} open files but "
                             f"RLIMIT_NOFILE's hard limit is {hard}: raise it "
                             "(ulimit -Hn as root, or the container's limit)") from None
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _wait_ready(server: ServerProcess, base: str, tls: ssl.SSLContext,
                timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=2,
                                        context=tls) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s:\n{server.log()}")


@contextmanager
def start_server(url: str, directory: Path, config: Path, extra: tuple[str, ...],
                 pki: tuple[Path, Path, Path] | None,
                 tls: ssl.SSLContext | None) -> Iterator[ServerProcess]:
    """One `aami-server serve`, on HTTPS when `pki` (CA, certificate, key) is given."""
    if pki is None or tls is None:
        with ServerProcess.start(url, directory, config=str(config),
                                 extra_args=extra) as plain:
            yield plain
        return
    port = free_port()
    log_path = directory / f"server-{port}.log"
    command = [str(BIN / "aami-server"), "serve", "--database", url, "--listen",
               f"127.0.0.1:{port}", "--config", str(config), "--tls-cert", str(pki[1]),
               "--tls-key", str(pki[2]), *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(url, port, directory, process, log_path)
    try:
        _wait_ready(server, f"https://127.0.0.1:{port}", tls)
        yield server
    finally:
        server.stop()


def _wait_for_children(server: ServerProcess, count: int) -> list[int]:
    """The pids of a supervisor's `count` children, once each one listens."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = child_pids(server.process.pid)
        listening = listening_sockets(server.port)
        owners = [pid for pid in children if socket_inodes(pid) & listening]
        if len(owners) == count:
            return sorted(owners)
        time.sleep(0.2)
    raise RuntimeError(f"{count} server processes did not all listen:\n{server.log()}")


def start_servers(args: argparse.Namespace, stack: ExitStack, url: str, directory: Path,
                   pki: tuple[Path, Path, Path] | None, tls: ssl.SSLContext | None
                   ) -> tuple[list[ServerProcess], list[int]]:
    config = directory / "server.yaml"
    config.write_text(f"server: {{db_threads: {args.db_threads}}}\n"
                      "logging: {level: warning}\n")
    if args.shared_port:
        servers = [stack.enter_context(start_server(
            url, directory, config, ("--processes", str(args.server_processes)), pki, tls))]
        return servers, _wait_for_children(servers[0], args.server_processes)
    servers = [stack.enter_context(start_server(url, directory, config, (), pki, tls))
               for _ in range(args.server_processes)]
    return servers, [s.process.pid for s in servers]
