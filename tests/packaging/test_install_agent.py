"""packaging/install-agent.sh against a real HTTP(S) server serving a signed release.

The server here is a small stand-in for aami-server's download routes
(docs/install.md section 3: /install-agent.sh and /downloads/PATH); the bundle is
signed with real openssl, TLS uses a CA made with openssl, and the installer is
fetched and run the documented way (`curl ... | bash -s -- ...`).
"""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.bundlekit import ReleaseKey, build_bundle, make_release_key, sign_bundle
from tests.packaging.test_install import snapshot
from tests.packaging.tools import REPO, require_tool

SCRIPT = REPO / "packaging" / "install-agent.sh"
TOKEN = "bt_TestToken-123.abc"


class ReleaseServer:
    """Serves /install-agent.sh and /downloads/* from a bundle directory."""

    def __init__(self, bundle: Path, tls: ssl.SSLContext | None = None) -> None:
        self.bundle = bundle
        self.overrides: dict[str, bytes | None] = {}  # None: answer 404
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.lookup(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def lookup(self, path: str) -> bytes | None:
        if path == "/install-agent.sh":
            return SCRIPT.read_bytes()
        if not path.startswith("/downloads/"):
            return None
        name = path.removeprefix("/downloads/")
        if name in self.overrides:
            return self.overrides[name]
        target = (self.bundle / name).resolve()
        if self.bundle.resolve() not in target.parents or not target.is_file():
            return None
        return target.read_bytes()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def key(tmp_path: Path) -> ReleaseKey:
    return make_release_key(tmp_path / "keys")


@pytest.fixture
def bundle(tmp_path: Path, key: ReleaseKey) -> Path:
    root = build_bundle(tmp_path / "bundle", "0.1.0", key)
    # The real agent, so that --migrate-cron runs the real migration.
    agent = root / "bin" / "aami-agent"
    agent.write_text(f'#!/bin/sh\nexec {Path(sys.executable).parent / "aami-agent"} "$@"\n')
    sign_bundle(root, key)
    return root


@pytest.fixture
def server(bundle: Path) -> Iterator[ReleaseServer]:
    srv = ReleaseServer(bundle)
    yield srv
    srv.close()


@pytest.fixture
def destdir(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    root.mkdir()
    (tmp_path / "tmp").mkdir()
    return root


def run_script(destdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    require_tool("curl")
    require_tool("openssl")
    env = {**os.environ, "TMPDIR": str(destdir.parent / "tmp")}
    env.pop("AAMI_SERVER", None)
    env.pop("AAMI_TOKEN", None)
    return subprocess.run(["bash", str(SCRIPT), "--destdir", str(destdir), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def make_tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A site CA and a server certificate for 127.0.0.1, made with openssl."""
    openssl = require_tool("openssl")
    d = tmp_path / "pki"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=AAMI test site CA")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "1", "-extfile", "ext")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "srv.pem", d / "srv.key")
    return d / "ca.pem", context


def test_documented_pipe_install_over_pinned_tls(
    tmp_path: Path, bundle: Path, key: ReleaseKey, destdir: Path
) -> None:
    from aami.agent.config import load_config

    ca, context = make_tls(tmp_path)
    srv = ReleaseServer(bundle, context)
    try:
        pipeline = (
            f"curl -fsSL --cacert {ca} {srv.url}/install-agent.sh | bash -s -- "
            f"--server {srv.url} --token {TOKEN} --ca-file {ca} --release-key {key.public} "
            f"--destdir {destdir} --no-start"
        )
        env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
        result = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True,
                                text=True, timeout=120, env=env)
    finally:
        srv.close()
    assert result.returncode == 0, result.stderr
    assert "verified: release manifest signed" in result.stdout

    binary = destdir / "usr/bin/aami-agent"
    assert binary.read_bytes() == (bundle / "bin/aami-agent").read_bytes()
    assert binary.stat().st_mode & 0o777 == 0o755
    assert (destdir / "usr/lib/systemd/system/aami-agent.service").read_bytes() == (
        REPO / "systemd/aami-agent.service"
    ).read_bytes()
    assert (destdir / "usr/lib/sysusers.d/aami-agent.conf").is_file()
    token = destdir / "etc/aami/bootstrap-token"
    assert token.read_text() == TOKEN + "\n"
    assert token.stat().st_mode & 0o777 == 0o600
    assert (destdir / "etc/aami/ca.pem").read_bytes() == ca.read_bytes()
    assert (destdir / "etc/aami/release.pub").read_bytes() == key.public.read_bytes()
    assert (destdir / "etc/aami/trusted-keys/ops.pub").read_bytes() == (
        bundle / "trusted-keys/ops.pub"
    ).read_bytes()
    config = load_config(str(destdir / "etc/aami/agent.yaml"), env={})
    assert config.server.url == srv.url
    assert config.server.ca_file == "/etc/aami/ca.pem"
    assert config.executor.run_as == "aami-runner"
    assert config.trust.keys_dir == "/etc/aami/trusted-keys"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unpinned_tls_fails_and_writes_nothing(
    tmp_path: Path, bundle: Path, key: ReleaseKey, destdir: Path
) -> None:
    _, context = make_tls(tmp_path)
    srv = ReleaseServer(bundle, context)
    try:
        result = run_script(destdir, "--server", srv.url, "--token", TOKEN,
                            "--release-key", str(key.public))
    finally:
        srv.close()
    assert result.returncode == 1
    assert "cannot download" in result.stderr
    assert snapshot(destdir) == {}


@pytest.mark.parametrize("path", ["bin/aami-agent", "systemd/aami-agent.service",
                                  "trusted-keys/ops.pub"])
def test_a_tampered_download_is_refused(
    server: ReleaseServer, bundle: Path, key: ReleaseKey, destdir: Path, path: str
) -> None:
    data = bytearray((bundle / path).read_bytes())
    data[len(data) // 2] ^= 0x01
    server.overrides[path] = bytes(data)
    result = run_script(destdir, "--server", server.url, "--token", TOKEN,
                        "--release-key", str(key.public))
    assert result.returncode == 1
    assert f"{path}: SHA-256 mismatch" in result.stderr
    assert snapshot(destdir) == {}


def test_a_manifest_signed_by_another_key_is_refused(
    tmp_path: Path, server: ReleaseServer, destdir: Path
) -> None:
    other = make_release_key(tmp_path / "other", "other")
    result = run_script(destdir, "--server", server.url, "--token", TOKEN,
                        "--release-key", str(other.public))
    assert result.returncode == 1
    assert "signature does not verify" in result.stderr
    assert snapshot(destdir) == {}


def test_an_unsigned_release_is_refused_when_a_key_is_pinned(
    server: ReleaseServer, key: ReleaseKey, destdir: Path
) -> None:
    server.overrides["MANIFEST.sha256.sig"] = None
    result = run_script(destdir, "--server", server.url, "--token", TOKEN,
                        "--release-key", str(key.public))
    assert result.returncode == 1
    assert "the release is not signed" in result.stderr
    assert snapshot(destdir) == {}


def test_without_a_pinned_release_key_the_installer_refuses(
    server: ReleaseServer, destdir: Path
) -> None:
    # A server that picked the release key would pick the publisher keys the node trusts.
    result = run_script(destdir, "--server", server.url, "--token", TOKEN, "--no-start")
    assert result.returncode == 2
    assert "no release key pinned" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(destdir) == {}


def test_insecure_trust_server_installs_with_a_loud_warning(
    server: ReleaseServer, bundle: Path, destdir: Path
) -> None:
    result = run_script(destdir, "--server", server.url, "--token", TOKEN, "--no-start",
                        "--insecure-trust-server")
    assert result.returncode == 0, result.stderr
    assert "NO release key is pinned" in result.stderr
    assert "plain HTTP" in result.stderr
    assert (destdir / "usr/bin/aami-agent").read_bytes() == (bundle / "bin/aami-agent").read_bytes()


def test_release_key_sha256_pins_the_key_the_server_hands_out(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    bundle = build_bundle(tmp_path / "withkey", "0.1.0", key)
    (bundle / "release.pub").write_bytes(key.public.read_bytes())
    sign_bundle(bundle, key)
    srv = ReleaseServer(bundle)
    try:
        result = run_script(destdir, "--server", srv.url, "--token", TOKEN, "--no-start",
                            "--release-key-sha256", key.key_id.upper())
        assert result.returncode == 0, result.stderr
        assert "verified: release manifest signed" in result.stdout
        assert (destdir / "etc/aami/release.pub").read_bytes() == key.public.read_bytes()
        # The server swaps in a key of its own (and signs with it): refused.
        other = make_release_key(tmp_path / "other")
        srv.overrides["release.pub"] = other.public.read_bytes()
        fresh = tmp_path / "node2"
        fresh.mkdir()
        refused = run_script(fresh, "--server", srv.url, "--token", TOKEN, "--no-start",
                             "--release-key-sha256", key.key_id)
    finally:
        srv.close()
    assert refused.returncode == 1
    assert f"not the pinned {key.key_id}" in refused.stderr
    assert snapshot(fresh) == {}


def test_migrate_cron_disables_the_old_runner_with_the_real_agent(
    server: ReleaseServer, key: ReleaseKey, destdir: Path
) -> None:
    cron = destdir / "etc/cron.d/aami-dynamic-check"
    cron.parent.mkdir(parents=True)
    cron.write_text("*/5 * * * * root /usr/local/bin/aami-check-runner\n")
    result = run_script(destdir, "--server", server.url, "--token", TOKEN,
                        "--release-key", str(key.public), "--migrate-cron")
    assert result.returncode == 0, result.stderr
    assert not cron.exists()
    assert (cron.parent / "aami-dynamic-check.disabled-by-aami-agent").is_file()
    assert (destdir / "var/lib/aami-agent/migrate-cron.json").is_file()


def test_rerun_keeps_the_existing_config_and_needs_no_token(
    server: ReleaseServer, key: ReleaseKey, destdir: Path
) -> None:
    first = run_script(destdir, "--server", server.url, "--token", TOKEN,
                       "--release-key", str(key.public))
    assert first.returncode == 0, first.stderr
    config = destdir / "etc/aami/agent.yaml"
    original = config.read_text()
    again = run_script(destdir, "--server", server.url + "/", "--hostname", "node-07")
    assert again.returncode == 0, again.stderr
    assert config.read_text() == original
    assert "hostname: \"node-07\"" in (destdir / "etc/aami/agent.yaml.new").read_text()
    assert "verified: release manifest signed" in again.stdout  # key from /etc/aami


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", TOKEN], "--server is required"),
        (["--server", "config:8443", "--token", TOKEN], "--server: expected a URL"),
        (["--server", "https://c", "--token", "a b"], "--token: unexpected characters"),
        (["--server", "https://c"], "--token is required"),
        (["--server", "https://c", "--token", TOKEN], "no release key pinned"),
        (["--server", "https://c", "--token", TOKEN, "--release-key-sha256", "abc"],
         "--release-key-sha256: expected 64 hex digits"),
        (["--server", "https://c", "--token", TOKEN, "--frobnicate"], "unknown argument"),
    ],
)
def test_usage_errors_exit_2(destdir: Path, args: list[str], message: str) -> None:
    result = run_script(destdir, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keys_trusted_layout_is_accepted(tmp_path: Path, key: ReleaseKey, destdir: Path) -> None:
    bundle = build_bundle(tmp_path / "alt", "0.1.0", key, keys_dir="keys/trusted")
    srv = ReleaseServer(bundle)
    try:
        result = run_script(destdir, "--server", srv.url, "--token", TOKEN,
                            "--release-key", str(key.public))
    finally:
        srv.close()
    assert result.returncode == 0, result.stderr
    assert (destdir / "etc/aami/trusted-keys/ops.pub").read_bytes() == (
        bundle / "keys/trusted/ops.pub"
    ).read_bytes()


def test_the_static_agent_is_preferred_when_the_release_carries_it(
    tmp_path: Path, key: ReleaseKey, destdir: Path
) -> None:
    bundle = build_bundle(tmp_path / "static", "0.1.0", key)
    (bundle / "bin" / "aami-agent-static").write_text("#!/bin/sh\necho static\n")
    sign_bundle(bundle, key)
    srv = ReleaseServer(bundle)
    try:
        static = run_script(destdir, "--server", srv.url, "--token", TOKEN, "--no-start",
                            "--release-key", str(key.public))
        assert static.returncode == 0, static.stderr
        assert (destdir / "usr/bin/aami-agent").read_bytes() == (
            bundle / "bin/aami-agent-static").read_bytes()
        other = tmp_path / "other-node"
        other.mkdir()
        dynamic = run_script(other, "--server", srv.url, "--token", TOKEN, "--no-start",
                             "--release-key", str(key.public), "--dynamic")
        assert dynamic.returncode == 0, dynamic.stderr
        assert (other / "usr/bin/aami-agent").read_bytes() == (
            bundle / "bin/aami-agent").read_bytes()
    finally:
        srv.close()


def _node_install_block() -> str:
    """docs/install.md section 3 as written, minus its two example assignments."""
    text = (REPO / "docs/install.md").read_text()
    block = text.split("<!-- node-install -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return "\n".join(line for line in block.splitlines()
                     if not line.startswith(("SERVER=", "BOOTSTRAP_TOKEN=")))


def _run_block(tmp_path: Path, server: ReleaseServer, key: ReleaseKey,
               destdir: Path) -> subprocess.CompletedProcess[str]:
    # DESTDIR keeps even a wrongly accepted installer away from this machine's /.
    env = {"PATH": os.environ["PATH"], "SERVER": server.url, "BOOTSTRAP_TOKEN": TOKEN,
           "RELEASE_PUB": str(key.public), "CA": str(key.public), "DESTDIR": str(destdir),
           "TMPDIR": str(tmp_path / "tmp")}
    return subprocess.run(["sh", "-c", _node_install_block()], capture_output=True,
                          text=True, timeout=120, env=env)


def test_documented_node_install_checks_the_installer_before_running_it(
    tmp_path: Path, server: ReleaseServer, key: ReleaseKey, destdir: Path
) -> None:
    require_tool("curl")
    require_tool("openssl")
    ok = _run_block(tmp_path, server, key, destdir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "install-agent.sh: OK" in ok.stdout
    assert (destdir / "usr/bin/aami-agent").is_file()

    # A server that hands out another installer: nothing runs, nothing is written.
    marker = tmp_path / "ran"
    server.overrides["install-agent.sh"] = f"#!/bin/sh\ntouch {marker}\n".encode()
    fresh = tmp_path / "node2"
    fresh.mkdir()
    swapped = _run_block(tmp_path, server, key, fresh)
    assert swapped.returncode == 1
    assert "node install FAILED" in swapped.stderr and "FAILED" in swapped.stdout
    assert not marker.exists() and snapshot(fresh) == {}

    # A manifest signed by another key: refused before the installer is looked at.
    del server.overrides["install-agent.sh"]
    other = make_release_key(tmp_path / "other")
    refused = _run_block(tmp_path, server, other, fresh)
    assert refused.returncode == 1 and "node install FAILED" in refused.stderr
    assert snapshot(fresh) == {}
