"""`aami-server serve --processes N`: N server processes on one port, one host.

A server process uses one core at most (the GIL), and the Agent API benchmark needs
two processes on two cores for 20,000 agents (docs/scaling.md). Rather than asking
for a load balancer in front of one host, the parent starts N copies of itself,
each listening on the same address with SO_REUSEPORT: the kernel spreads incoming
connections over them, and agents keep theirs open.

The parent serves nothing. It:

* first binds the address itself *without* SO_REUSEPORT, and gives up if that
  fails: otherwise the children would silently share the port with whatever else
  listens there with SO_REUSEPORT (another aami-server on another database, say);
* starts each child as `serve` with the same arguments plus `--processes 1
  --reuse-port` (a fresh interpreter, not a fork: nothing of the parent's state is
  shared by accident);
* restarts a child that dies, unless it died before it was ready (an unreachable
  database, a bad TLS key): then it stops the others and exits non-zero, so that
  systemd's `Restart=on-failure` and the journal say what happened. A child says
  it is ready, once it listens, by writing to a pipe (`READY_FD_ENV`);
* makes the kernel send each child SIGTERM if the supervisor itself dies
  (PR_SET_PDEATHSIG), so no orphan keeps serving the port;
* on SIGTERM or SIGINT, passes SIGTERM on and waits for every child to finish its
  in-flight requests and flush its buffers;
* gives the children one Prometheus multiprocess directory, so `/metrics` on any of
  them reports the sum over all (counters and histograms only, which is all the
  server has).

Processes share nothing else; everything they must agree on lives in the database
(the caches' consistency rules are in `server/caches.py`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from aami.server.config import ServerConfig

log = logging.getLogger(__name__)

READY_FD_ENV = "AAMI_SERVER_READY_FD"  # the child writes one byte here once it listens
STOP_SECONDS = 30.0  # in-flight requests get this long after SIGTERM
POLL_SECONDS = 0.25
PR_SET_PDEATHSIG = 1


class PortTaken(Exception):
    """The listen address is in use: said once (the CLI prints it), not once per child."""


def check_port_free(host: str, port: int) -> None:
    """Bind every address of `host:port` as aiohttp would, but without SO_REUSEPORT."""
    for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise PortTaken(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (inherited by exec)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_command(argv: Sequence[str]) -> list[str]:
    """This program again, as one process of several on a shared port."""
    program = [sys.executable] if getattr(sys, "frozen", False) else [
        sys.executable, "-m", "aami.server.cli"]
    return [*program, *argv, "--processes", "1", "--reuse-port"]


@dataclass
class Child:
    slot: int
    process: subprocess.Popen[bytes]
    ready_pipe: int
    ready: bool = False

    def check_ready(self) -> bool:
        if not self.ready and self.ready_pipe >= 0:
            with contextlib.suppress(BlockingIOError):
                self.ready = os.read(self.ready_pipe, 1) == b"1"
        return self.ready

    def close(self) -> None:
        if self.ready_pipe >= 0:
            os.close(self.ready_pipe)
            self.ready_pipe = -1


def announce_ready() -> None:
    """In a child: tell the supervisor this process listens (no-op when alone)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        with os.fdopen(int(fd), "wb") as pipe:
            pipe.write(b"1")


class Supervisor:
    def __init__(self, command: list[str], processes: int) -> None:
        self.command = command
        self.processes = processes
        self.stopping = False
        self.metrics_dir = tempfile.mkdtemp(prefix="aami-server-metrics-")
        self.env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        if getattr(sys, "frozen", False):
            # A single-file binary starting itself again: without this, the child's
            # bootloader takes the parent's _PYI_* variables for its own and fails.
            self.env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"

    def _start(self, slot: int) -> Child:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        try:
            # preexec_fn is safe here: the supervisor runs no threads.
            process = subprocess.Popen(
                self.command, env={**self.env, READY_FD_ENV: str(write_end)},
                pass_fds=[write_end], preexec_fn=_die_with_parent)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        log.info("server process %d of %d started (pid %d)", slot + 1, self.processes,
                 process.pid)
        return Child(slot, process, read_end)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("%s received; stopping %d server processes",
                     signal.Signals(signum).name, self.processes)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        children = [self._start(slot) for slot in range(self.processes)]
        failed = 0
        try:
            while not self.stopping:
                time.sleep(POLL_SECONDS)
                for i, child in enumerate(children):
                    if not child.ready and child.check_ready():
                        log.info("server process %d (pid %d) is listening", child.slot + 1,
                                 child.process.pid)
                    code = child.process.poll()
                    if code is None:
                        continue
                    ready = child.check_ready()  # it may have written just before exiting
                    child.close()
                    if self.stopping:  # a signal for the whole group reached it first
                        break
                    if not ready:
                        log.error("server process %d (pid %d) %s while starting; stopping "
                                  "the others", child.slot + 1, child.process.pid,
                                  describe_exit(code))
                        failed = code if code > 0 else 1
                        self.stopping = True
                        break
                    log.warning("server process %d (pid %d) %s; restarting it",
                                child.slot + 1, child.process.pid, describe_exit(code))
                    children[i] = self._start(child.slot)
        finally:
            self._stop(children)
            for child in children:
                child.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return failed

    def _stop(self, children: list[Child]) -> None:
        running = [c.process for c in children if c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("server process pid %d did not stop in %.0f s; killing it",
                          process.pid, STOP_SECONDS)
                process.kill()
                process.wait()


def supervise(argv: Sequence[str], config: ServerConfig) -> int:
    check_port_free(config.listen_host, config.listen_port)
    return Supervisor(child_command(argv), config.processes).run()
