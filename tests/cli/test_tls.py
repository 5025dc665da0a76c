"""`--ca-file`: the CLI talks to a real TLS `aami-server` only when it trusts the CA."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import aami
from tests.harness import BIN, free_port, run_cli
from tests.pki import make_pki


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    ca, cert, key = make_pki(tmp_path)
    database = f"sqlite:///{tmp_path / 'tls.db'}"
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    args = ["serve", "--database", database, "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [str(BIN / "aami-server"), *args, "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(ca))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                urllib.request.urlopen(url + "/health/ready", timeout=2, context=context)
                break
            except OSError:
                assert time.monotonic() < deadline, "TLS server not ready"
                time.sleep(0.1)
        token = run_cli("aami-server", "token", "create", "--role", "admin", "--name", "t",
                        "--database", database).stdout.strip()  # fmt: skip
        yield url, token, ca
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        log.close()


def test_ca_file_is_required_and_used(tls_server: tuple[str, str, Path], tmp_path: Path) -> None:
    url, token, ca = tls_server
    assert aami("keys", "generate", "--out", str(tmp_path / "k"), "--name", "tls").code == 0
    args = ["key", "register", str(tmp_path / "k" / "tls.pub"), "--name", "tls", "--server", url]
    untrusted = aami(*args, "--token", token)
    assert untrusted.code == 1
    assert "TLS certificate not trusted" in untrusted.err and "--ca-file" in untrusted.err
    trusted = aami(*args, "--token", token, "--ca-file", str(ca))
    assert trusted.code == 0, trusted.err
    via_env = aami(*args, env={"AAMI_TOKEN": token, "AAMI_CA_FILE": str(ca)})
    assert via_env.code == 1 and "(CONFLICT)" in via_env.err  # reached the server: trusted
