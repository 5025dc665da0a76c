"""`--ca-file`: the CLI talks to a real TLS `aami-server` only when it trusts the CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cli.conftest import aami
from tests.harness import BIN, free_port, run_cli


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    ca, cert, key = _make_pki(tmp_path)
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
