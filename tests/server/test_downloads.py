"""GET /install-agent.sh and GET /downloads/{path} on a real `aami-server serve`
process, serving a hand-made signed release (tests/packaging/bundlekit.py) through a
`current` symlink as install.sh lays it out; then packaging/install-agent.sh run the
documented way (`curl ... | bash -s -- ...`) against those real routes into a DESTDIR.

The routes never touch the database, so one backend (SQLite) is enough here; the
OpenAPI and schemathesis tests run them on both.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aami.server.api.downloads import RELEASE_DIR_ENV, is_safe_path, listed_paths, servable
from tests.harness import ServerProcess, http
from tests.packaging.bundlekit import ReleaseKey, build_bundle, make_release_key, sign_bundle
from tests.packaging.tools import REPO, require_tool

TOKEN = "bt_TestToken-123.abc"


@pytest.fixture
def key(tmp_path: Path) -> ReleaseKey:
    return make_release_key(tmp_path / "keys")


@pytest.fixture
def release(tmp_path: Path, key: ReleaseKey) -> Path:
    """/opt/aami/current, in miniature: a symlink to a signed release directory, plus
    files that must never be served (unlisted, and a listed symlink pointing out)."""
    root = build_bundle(tmp_path / "releases", "0.2.0", key)
    (root / "bin" / "aami-agent").write_bytes(b"\x7fELF agent binary 0.2.0\n" * 1000)
    outside = tmp_path / "outside-secret"
    outside.write_text("server secret\n")
    (root / "docs" / "escape.md").symlink_to(outside)
    sign_bundle(root, key)  # lists docs/escape.md (install.sh would refuse such a release)
    (root / "unlisted.txt").write_text("not in the manifest\n")
    current = tmp_path / "current"
    current.symlink_to(root)
    return current


@pytest.fixture
def srv(tmp_path: Path, release: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[ServerProcess]:
    monkeypatch.setenv(RELEASE_DIR_ENV, str(release))  # inherited by the server process
    with ServerProcess.start(f"sqlite:///{tmp_path / 'aami.db'}", tmp_path) as server:
        yield server


def manifest_of(release: Path) -> dict[str, str]:
    lines = (release / "MANIFEST.sha256").read_text().splitlines()
    return {line[66:]: line[:64] for line in lines}


def get(server: ServerProcess, path: str) -> tuple[int, bytes, dict[str, str]]:
    reply = http("GET", server.url + path)
    return reply.status, reply.body, reply.headers


def test_every_listed_file_and_the_manifests_are_served_without_a_token(
    srv: ServerProcess, release: Path
) -> None:
    listed = manifest_of(release)
    assert "bin/aami-agent" in listed and "systemd/aami-agent.service" in listed
    for path, digest in listed.items():
        if path == "docs/escape.md":
            continue
        status, body, headers = get(srv, f"/downloads/{path}")
        assert status == 200, path
        assert hashlib.sha256(body).hexdigest() == digest, path
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Cache-Control"] == "no-cache"
    # The OpenAPI spelling of a path parameter with a slash (percent-encoded) works too.
    status, body, _ = get(srv, "/downloads/bin%2Faami-agent")
    assert status == 200 and body == (release / "bin/aami-agent").read_bytes()
    for name in ("MANIFEST.sha256", "MANIFEST.sha256.sig", "MANIFEST.dsse.json"):
        status, body, _ = get(srv, f"/downloads/{name}")
        assert status == 200 and body == (release / name).read_bytes(), name


@pytest.mark.parametrize("path", [
    "unlisted.txt",                      # in the release directory, not in the manifest
    "docs/escape.md",                    # listed, but a symlink out of the release
    "nope/bin/aami-agent",
    "bin/../bin/aami-agent",
    "bin/%2e%2e/bin/aami-agent",
    "./bin/aami-agent",
    "bin//aami-agent",
    "%2e%2e/outside-secret",
    "..%2f..%2fetc%2fpasswd",
    "bin/aami-agent/",
    "BIN/AAMI-AGENT",
])
def test_anything_else_is_a_404_in_the_error_shape(srv: ServerProcess, path: str) -> None:
    reply = http("GET", f"{srv.url}/downloads/{path}")
    assert reply.status == 404, (path, reply.status)
    assert reply.json == {"error": "no such file in the installed release",
                          "code": "NOT_FOUND", "details": {}}


def test_a_nul_in_the_path_is_refused_in_the_error_shape(srv: ServerProcess) -> None:
    # Refused by the routing layer for every route before any lookup (server/routing.py).
    reply = http("GET", f"{srv.url}/downloads/bin/aami-agent%00")
    assert reply.status == 400 and reply.json["code"] == "VALIDATION_ERROR"


def test_traversal_outside_the_route_never_reaches_the_release(srv: ServerProcess) -> None:
    for path in ("/downloads/../../etc/passwd", "/downloads/%2e%2e/%2e%2e/etc/passwd",
                 "/install-agent.sh/../downloads/unlisted.txt"):
        status, body, _ = get(srv, path)
        assert status == 404, path
        assert b"root:" not in body and b"not in the manifest" not in body


def test_install_agent_sh_is_the_releases_copy(srv: ServerProcess, release: Path) -> None:
    status, body, headers = get(srv, "/install-agent.sh")
    assert status == 200 and body == (release / "install-agent.sh").read_bytes()
    assert headers["Content-Type"].startswith("text/x-shellscript")


def test_without_a_release_the_program_serves_its_own_installer_and_no_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RELEASE_DIR_ENV, str(tmp_path / "no-such-release"))
    with ServerProcess.start(f"sqlite:///{tmp_path / 'aami.db'}", tmp_path) as server:
        status, body, _ = get(server, "/install-agent.sh")
        assert status == 200 and body == (REPO / "packaging" / "install-agent.sh").read_bytes()
        status, body, _ = get(server, "/downloads/MANIFEST.sha256")
        assert status == 404
        assert "no installed release" in server.log()


def test_the_routes_are_public_and_documented(srv: ServerProcess) -> None:
    document = http("GET", srv.url + "/api/openapi.json").json
    for path, media in (("/install-agent.sh", "text/x-shellscript"),
                        ("/downloads/{path}", "application/octet-stream")):
        operation = document["paths"][path]["get"]
        assert "security" not in operation
        assert media in operation["responses"]["200"]["content"]


def test_path_rules() -> None:
    assert is_safe_path("bin/aami-agent") and is_safe_path("trusted-keys/ops.pub")
    for bad in ("", "/etc/passwd", "../x", "a/../b", "./a", "a//b", "a/", "a\\b", "a b"):
        assert not is_safe_path(bad), bad
    listed = listed_paths(f"{'a' * 64}  bin/aami-agent\n{'b' * 64}  ../escape\n"
                          f"{'c' * 64} one-space\nnot a line\n")
    assert listed == {"bin/aami-agent"}
    assert servable("MANIFEST.sha256.sig", listed) and not servable("VERSION", listed)


def run_installer(server: ServerProcess, tmp_path: Path, key: ReleaseKey
                  ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`curl -fsSL SERVER/install-agent.sh | bash -s -- ...`, as docs/install.md says."""
    curl = require_tool("curl")
    require_tool("openssl")
    destdir = tmp_path / "node"
    destdir.mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    env.pop("AAMI_SERVER", None)
    env.pop("AAMI_TOKEN", None)
    pipeline = (f'{curl} -fsSL "$1/install-agent.sh" | bash -s -- --server "$1" '
                f'--token "$2" --release-key "$3" --destdir "$4"')
    result = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline, "bash", server.url,
                             TOKEN, str(key.public), str(destdir)],
                            capture_output=True, text=True, timeout=120, env=env)
    return result, destdir


def test_install_agent_sh_installs_from_the_real_server(
    srv: ServerProcess, release: Path, key: ReleaseKey, tmp_path: Path
) -> None:
    result, destdir = run_installer(srv, tmp_path, key)
    assert result.returncode == 0, result.stderr
    assert "verified: release manifest signed by" in result.stdout
    agent = destdir / "usr/bin/aami-agent"
    assert agent.read_bytes() == (release / "bin/aami-agent").read_bytes()
    assert agent.stat().st_mode & 0o777 == 0o755
    assert (destdir / "usr/lib/systemd/system/aami-agent.service").read_bytes() == \
        (release / "systemd/aami-agent.service").read_bytes()
    assert (destdir / "etc/aami/trusted-keys/ops.pub").read_bytes() == \
        (release / "trusted-keys/ops.pub").read_bytes()
    assert (destdir / "etc/aami/bootstrap-token").read_text() == TOKEN + "\n"
    assert f'url: "{srv.url}"' in (destdir / "etc/aami/agent.yaml").read_text()


def test_a_file_changed_on_the_server_is_refused_and_nothing_is_written(
    srv: ServerProcess, release: Path, key: ReleaseKey, tmp_path: Path
) -> None:
    agent = release / "bin" / "aami-agent"
    agent.write_bytes(agent.read_bytes().replace(b"0.2.0", b"6.6.6"))  # manifest unchanged
    result, destdir = run_installer(srv, tmp_path, key)
    assert result.returncode == 1
    assert "bin/aami-agent: SHA-256 mismatch" in result.stderr
    assert list(destdir.rglob("*")) == []


def test_a_manifest_signed_by_another_key_is_refused(
    srv: ServerProcess, tmp_path: Path
) -> None:
    stranger = make_release_key(tmp_path / "stranger")
    result, destdir = run_installer(srv, tmp_path, stranger)
    assert result.returncode == 1
    assert "signature does not verify" in result.stderr
    assert list(destdir.rglob("*")) == []
