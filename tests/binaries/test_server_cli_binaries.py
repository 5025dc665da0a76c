"""The single-file `dist/aami-server` and `dist/aami` carry what they read at run time:
SQL migrations, templates and static files (importlib.resources, jinja2.PackageLoader)
and the node installer the server hands out. Checked on a real process, on SQLite
and PostgreSQL, with nothing from the source tree on its path (cwd is a temp dir),
under the kernel's memory-deny-write-execute (PR_SET_MDWE, Linux 6.3+), which is what
`MemoryDenyWriteExecute=yes` in systemd/aami-server.service asks of the process: the
unpacked libraries must load without writable-executable memory."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.binaries.conftest import REPO, Binaries
from tests.conftest import fresh_database
from tests.harness import ServerProcess, free_port, http, listening_sockets, require

pytestmark = pytest.mark.slow

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def _deny_write_execute() -> None:
    """In the child before exec: refuse memory that is (or becomes) writable and
    executable; inherited across exec, like systemd's MemoryDenyWriteExecute."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


_WX_MAP = ("import mmap; mmap.mmap(-1, 4096, "
           "prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)")


def _mdwe_supported() -> bool:
    """True when the restriction is available and really refuses a W+X mapping."""
    try:
        probe = subprocess.run(["/usr/bin/python3.11", "-c", _WX_MAP], capture_output=True,
                               preexec_fn=_deny_write_execute, check=False)
    except subprocess.SubprocessError:
        return False
    return probe.returncode != 0 and b"PermissionError" in probe.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def frozen_server(request: pytest.FixtureRequest, binaries: Binaries, tmp_path: Path
                  ) -> Iterator[ServerProcess]:
    require(_mdwe_supported(), "the kernel has no PR_SET_MDWE (Linux 6.3+)")
    with fresh_database(request.param, tmp_path) as url:
        port = free_port()
        log = tmp_path / "server.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(binaries.server), "serve", "--database", url, "--listen",
                 f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                preexec_fn=_deny_write_execute)
        server = ServerProcess(url, port, tmp_path, process, log)
        try:
            server.wait_ready(timeout=60)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_frozen_server_migrates_renders_and_serves_its_files(
    frozen_server: ServerProcess, binaries: Binaries
) -> None:
    log = frozen_server.log()
    assert "migration 0001_initial" in log, log
    login = http("GET", frozen_server.url + "/ui/login")
    assert login.status == 200 and b"<form" in login.body
    css = http("GET", frozen_server.url + "/ui/static/app.css")
    assert css.status == 200 and css.body == (REPO / "server/static/app.css").read_bytes()
    installer = http("GET", frozen_server.url + "/install-agent.sh")
    assert installer.status == 200
    assert installer.body == (REPO / "packaging/install-agent.sh").read_bytes()
    token = subprocess.run([str(binaries.server), "token", "create", "--role", "admin",
                            "--name", "frozen", "--database", frozen_server.database_url],
                           capture_output=True, text=True, timeout=60)
    assert token.returncode == 0, token.stderr
    reply = http("GET", frozen_server.url + "/api/v1/targets", token=token.stdout.strip())
    assert reply.status == 200 and reply.json["data"] == []
    # Request bodies go through both validators (server/validation.py) in the binary too.
    created = http("POST", frozen_server.url + "/api/v1/groups", token=token.stdout.strip(),
                   json_body={"name": "gpu-nodes", "priority": 5})
    assert created.status == 201, created.body
    refused = http("POST", frozen_server.url + "/api/v1/groups", token=token.stdout.strip(),
                   json_body={"name": "gpu-nodes\n"})
    assert refused.status == 400 and refused.json["details"] == {"field": "body.name"}


def test_frozen_server_runs_several_processes_on_one_port(binaries: Binaries,
                                                         tmp_path: Path) -> None:
    # The supervisor starts the single-file binary again for each process: the
    # child's bootloader must unpack afresh, not mistake itself for the parent's.
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(binaries.server), "serve", "--processes", "2", "--listen",
             f"127.0.0.1:{port}", "--database", f"sqlite:///{tmp_path / 'aami.db'}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    server = ServerProcess(f"sqlite:///{tmp_path / 'aami.db'}", port, tmp_path, process, log)
    try:
        server.wait_ready(timeout=60)
        deadline = time.monotonic() + 60
        while server.log().count("is listening") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.log().count("is listening") == 2, server.log()
        assert len(listening_sockets(port)) == 2
        assert http("GET", server.url + "/health/ready").status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0, server.log()
    assert not listening_sockets(port)


def test_frozen_cli_generates_keys_and_signs(binaries: Binaries, tmp_path: Path) -> None:
    def aami(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(binaries.cli), *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)

    assert aami("keys", "generate", "--out", "keys", "--name", "ops").returncode == 0
    (tmp_path / "check.sh").write_text("echo ok\n")
    signed = aami("script", "sign", "check.sh", "--key", "keys/ops.key", "--name", "check",
                  "--version", "1.0.0")
    assert signed.returncode == 0, signed.stderr
    verified = aami("script", "verify", "check.sh.signed.json", "--trusted-keys", "keys")
    assert verified.returncode == 0, verified.stderr
    bad = aami("script", "sign", "missing.sh", "--key", "keys/ops.key", "--name", "x",
               "--version", "1.0.0")
    assert bad.returncode in (1, 2) and "Traceback" not in bad.stderr


def archive_modules(binary: Path) -> set[str]:
    """Module and file names inside a PyInstaller binary (pyi-archive_viewer -l -r)."""
    viewer = REPO / "build" / "venv" / "bin" / "pyi-archive_viewer"
    listing = subprocess.run([str(viewer), "-l", "-r", str(binary)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    return {line.rsplit(", ", 1)[1].strip("'") for line in listing.splitlines()
            if line.startswith(" ") and line.count(", ") >= 3}


def test_the_agent_binary_leaves_out_the_server_stack(binaries: Binaries) -> None:
    """packaging/pyinstaller/common.py's AGENT_EXCLUDES: every node carries and unpacks
    the agent binary at each start, so what the agent never imports stays out."""
    agent = archive_modules(binaries.agent)
    assert {"aami.agent.executor", "aami.agent.cli", "aami.trust.verify", "yaml",
            "nacl.signing"} <= agent
    unwanted = ("server", "aiohttp", "peewee", "jinja2", "psycopg2", "prometheus_client",
                "jsonschema", "fastjsonschema", "cli", "bundle", "policyfile", "cryptography")
    leaked = sorted(m for m in agent if m.removeprefix("aami.").removeprefix("aami/")
                    .split(".")[0].split("/")[0] in unwanted)
    assert leaked == []
    server = archive_modules(binaries.server)
    assert {"aami.server.app", "aiohttp", "peewee", "psycopg2", "aami/server/migrations/"
            "0001_initial.sqlite.sql", "aami/server/templates/base.html"} <= server
