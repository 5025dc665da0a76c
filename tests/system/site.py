"""A site as docs/install.md describes it, driven from the host: release artefacts,
the server host's install, the operator's workstation (the `aami` binary) and the
documented node install. Everything runs the shipped binaries and scripts."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.harness import Reply
from tests.system.nspawn import Container

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
DOCS = REPO / "docs" / "install.md"
VERSIONS = ("0.1.0", "0.1.1")  # the installed release and the upgrade


def docs_block(marker: str) -> str:
    """The first ```sh block after `<!-- marker -->` in docs/install.md."""
    text = DOCS.read_text()
    return text.split(f"<!-- {marker} -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]


def sh(*argv: str | Path, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stdout}{done.stderr}"
    return done.stdout


@dataclass
class Release:
    """Two bundles signed by one release key (make bundle), the site PKI and a publisher."""

    work: Path
    bundles: dict[str, Path]
    release_pub: Path
    ca: Path
    server_cert: Path
    server_key: Path
    publisher_key: Path

    @classmethod
    def build(cls, work: Path) -> Release:
        trusted = work / "trusted"
        sh(DIST / "aami", "keys", "generate", "--out", work / "publisher", "--name", "ops")
        trusted.mkdir()
        (trusted / "ops.pub").write_bytes((work / "publisher/ops.pub").read_bytes())
        bundles = {}
        for version in VERSIONS:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AAMI_BUNDLE_VERSION": version,
                   "AAMI_TRUSTED_KEYS": str(trusted), "BUNDLE_OUT": str(work / "out")}
            sh("make", "--no-print-directory", "-C", REPO, "bundle", env=env, timeout=1200)
            bundles[version] = work / "out" / f"aami-bundle-{version}.tar.gz"
        ca, cert, key = _site_pki(work / "pki")
        return cls(work, bundles, work / "out/release.pub", ca, cert, key,
                   work / "publisher/ops.key")


def _site_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A site CA and a server certificate for 127.0.0.1 (containers share the host net)."""
    directory.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=AAMI system-test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext")
    return directory / "ca.pem", directory / "server.crt", directory / "server.key"


@dataclass
class ServerHost:
    """The config server host: the bundle installed with install.sh, run by systemd."""

    box: Container
    release: Release
    port: int
    url: str = ""
    admin_token: str = ""
    token_stderr: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url = f"https://127.0.0.1:{self.port}"

    def unpack_and_install(self, version: str, *install_args: str) -> str:
        bundle = self.release.bundles[version]
        self.box.put(f"/root/usb/{bundle.name}", bundle.read_bytes())
        self.box.put("/root/usb/release.pub", self.release.release_pub.read_bytes())
        return self.box.ok(
            f"cd /root && tar -xzf usb/{bundle.name} && cd aami-bundle-{version} && "
            f"./install.sh {' '.join(install_args)}", timeout=180)

    def configure(self, database_url: str | None) -> None:
        """What the docs tell a site to do after the first install: TLS, a port of its
        own, and PostgreSQL in server.yaml (docs/install.md section 2)."""
        self.box.put("/etc/aami/tls/server.crt", self.release.server_cert.read_bytes())
        self.box.put("/etc/aami/tls/server.key", self.release.server_key.read_bytes(), 0o600)
        self.box.ok("chgrp aami /etc/aami/tls/server.key && chmod 0640 /etc/aami/tls/server.key")
        self.box.ok(
            f"sed -i -e 's|^  listen: .*|  listen: 127.0.0.1:{self.port}|' "
            "-e 's|^  # tls_cert: |  tls_cert: |' -e 's|^  # tls_key: |  tls_key: |' "
            "/etc/aami/server.yaml")
        if database_url:
            self.box.ok(f"sed -i 's|^  url: .*|  url: {database_url}|' /etc/aami/server.yaml")

    def start(self) -> None:
        self.box.ok("systemctl daemon-reload && systemctl enable --now aami-server")
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/health/ready", token=None).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("aami-server not ready:\n" + self.journal("aami-server")[-4000:])

    def make_admin_token(self) -> None:
        """docs/install.md section 2, as written: as the service user, with its config."""
        result = self.box.run("sudo -u aami aami-server token create --role admin --name ops "
                              "--config /etc/aami/server.yaml")
        assert result.code == 0, result.err
        self.admin_token = result.out.strip()
        self.token_stderr = result.err

    def get(self, path: str, token: str | None = "admin") -> Reply:
        return self.api("GET", path, token=token)

    def api(self, method: str, path: str, token: str | None = "admin", **kw: object) -> Reply:
        bearer = self.admin_token if token == "admin" else token
        return _https(method, self.url + path, self.release.ca, bearer, **kw)

    def journal(self, unit: str) -> str:
        return self.box.run(f"journalctl -b -u {unit} --no-pager -o cat").out


def _https(method: str, url: str, ca: Path, token: str | None, *,
           json_body: object = None, data: bytes | None = None,
           headers: dict[str, str] | None = None) -> Reply:
    """One request to the server over TLS, trusting only the site CA."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca))
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers))


@dataclass
class Workstation:
    """The operator's machine: the `aami` binary from dist/, keys in a folder."""

    release: Release
    server: ServerHost
    group: str = ""

    def aami(self, *args: str | Path) -> str:
        return sh(DIST / "aami", *args, "--server", self.server.url, "--token",
                  self.server.admin_token, "--ca-file", self.release.ca)

    def sign_and_publish(self, script: str, version: str) -> None:
        work = self.release.work / f"ws-{uuid.uuid4().hex[:6]}"
        work.mkdir()
        existing = json.loads(self.server.get("/api/v1/publisher-keys").body)["data"]
        if not any(k["name"] == "ops" for k in existing):
            self.aami("key", "register", self.release.work / "publisher/ops.pub", "--name", "ops")
        source = work / "whoami.sh"
        source.write_text('#!/bin/bash\necho "ran as $(id -un) on $(hostname)"\n')
        sh(DIST / "aami", "script", "sign", source, "--key", self.release.publisher_key,
           "--name", script, "--version", version, "--run-as", "aami-runner")
        self.aami("script", "publish", f"{source}.signed.json")

    def publish(self, script: str, version: str = "1.0.0", interval: str = "20s") -> str:
        """Register the publisher key, sign and publish `script`, a group, a policy that
        runs it there as aami-runner, and a bootstrap token for the group."""
        self.sign_and_publish(script, version)
        work = self.release.work / f"ws-{uuid.uuid4().hex[:6]}"
        work.mkdir()
        group = self.group = f"rack-{uuid.uuid4().hex[:6]}"
        self.aami("group", "create", group)
        policy = work / "policy.yaml"
        policy.write_text(
            f"policies:\n  - name: {script}\n    script: {script}\n    version: latest\n"
            f"    scope: group\n    group: {group}\n    params: {{}}\n"
            f"    schedule: {{mode: interval, interval: {interval}}}\n    timeout: 30s\n"
            "    run_as: aami-runner\n    enabled: true\n")
        self.aami("policy", "apply", policy)
        return self.aami("bootstrap-token", "create", "--group", group, "--max-uses", "100",
                         "--expires", "2h").strip()


def install_node(node: Container, server: ServerHost, token: str) -> str:
    """docs/install.md section 3, the block as written, with this site's values."""
    node.put("/root/release.pub", server.release.release_pub.read_bytes())
    node.put("/root/site-ca.pem", server.release.ca.read_bytes())
    block = "\n".join(line for line in docs_block("node-install").splitlines()
                      if not re.match(r"^(SERVER|BOOTSTRAP_TOKEN)=", line))
    env = {"SERVER": server.url, "BOOTSTRAP_TOKEN": token,
           "RELEASE_PUB": "/root/release.pub", "CA": "/root/site-ca.pem"}
    # The block's own assignments of RELEASE_PUB and CA name the same files.
    return node.ok(block, env=env, timeout=180)


def target_of(server: ServerHost, hostname: str) -> dict[str, object] | None:
    rows = json.loads(server.get(f"/api/v1/targets?hostname={quote(hostname)}").body)
    return rows["data"][0] if rows["data"] else None


def executions(server: ServerHost, target_id: object) -> list[dict[str, object]]:
    reply = server.get(f"/api/v1/executions?target_id={target_id}&limit=500")
    assert reply.status == 200, reply.body
    return list(json.loads(reply.body)["data"])


def agent_and_server_agree(node: Container, server: ServerHost, target_id: object) -> bool:
    """True once the agent's spool is empty and the server holds exactly the runs the
    agent counted; a result stored twice fails at once. Callers poll it, since a run
    may start between the two reads."""
    status = json.loads(node.ok("aami-agent status --json --config /etc/aami/agent.yaml"))
    stored = executions(server, target_id)
    ids = {e["id"] for e in stored}
    assert len(ids) == len(stored), "a result was stored twice"
    return not any(status["spool_pending"].values()) and status["scripts_total"] == len(ids)
