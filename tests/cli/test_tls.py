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


def test_large_bodies_cross_tls_with_small_read_buffers(
        tls_server: tuple[str, str, Path], tmp_path: Path) -> None:
    """The server reads TLS 16 KiB at a time (server/serve.py, memory per kept-alive
    agent): a signed script of 600 KiB (800 KB in base64) still goes up whole."""
    from asyncio import sslproto

    from aami.server.config import ServerConfig
    from aami.server.serve import TLS_READ_BUFFER, ssl_context

    url, token, ca = tls_server
    keys = tmp_path / "k"
    assert aami("keys", "generate", "--out", str(keys), "--name", "big").code == 0
    flags = ["--server", url, "--token", token, "--ca-file", str(ca)]
    assert aami("key", "register", str(keys / "big.pub"), "--name", "big", *flags).code == 0
    script = tmp_path / "big.sh"
    script.write_text("#!/bin/sh\n" + "# padding\n" * 61_000 + "echo ok\n")
    assert aami("script", "sign", str(script), "--key", str(keys / "big.key"), "--name",
                "big", "--version", "1.0.0").code == 0
    published = aami("script", "publish", str(script) + ".signed.json", *flags)
    assert published.code == 0, published.err
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(url + "/api/v1/scripts/big/versions/1.0.0",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30, context=context) as reply:
        body = reply.read()
    assert b"\"sha256\"" in body and len(script.read_bytes()) > 600_000
    # In this process too: configuring TLS shrinks asyncio's per-connection buffer.
    ssl_context(ServerConfig(tls_cert=str(tmp_path / "server.pem"),
                             tls_key=str(tmp_path / "server.key")))
    assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER
