"""`aami-server import BUNDLE`: a real bundle made by `aami bundle build` carrying a
signed script, its publisher key and a policy, imported into a fresh database on
each backend; the server then serves them like anything published through the API."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import ServerProcess, run_cli

ROOT = Path(__file__).resolve().parents[2]


def _make_bundle(tmp_path: Path) -> tuple[Path, Path]:
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "keys"), "--name", "release")
    run_cli("aami", "keys", "generate", "--out", str(tmp_path / "keys"), "--name", "ops")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "ops.pub").write_bytes((tmp_path / "keys/ops.pub").read_bytes())
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "disk-usage.sh"
    script.write_bytes((ROOT / "examples/scripts/disk-usage.sh").read_bytes())
    run_cli("aami", "script", "sign", str(script), "--key", str(tmp_path / "keys/ops.key"),
            "--name", "disk-usage", "--version", "1.2.0", "--params-schema",
            str(ROOT / "examples/scripts/disk-usage.schema.json"))
    script.unlink()
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("aami-agent", "aami-server", "aami"):
        (dist / name).write_text("#!/bin/sh\n")
    out = tmp_path / "site.tar.gz"
    run_cli("aami", "bundle", "build", "--key", str(tmp_path / "keys/release.key"), "--out",
            str(out), "--dist", str(dist), "--trusted-keys", str(trusted), "--scripts",
            str(scripts), "--policies", str(ROOT / "examples/policies/demo.yaml"), "--quiet")
    return out, tmp_path / "keys/release.pub"


def test_import_then_reimport(live_server: ServerProcess, tmp_path: Path) -> None:
    bundle, release = _make_bundle(tmp_path)
    db = live_server.database_url
    first = run_cli("aami-server", "import", str(bundle), "--key", str(release),
                    "--database", db)
    assert "keys registered 1" in first.stdout and "scripts stored 1" in first.stdout
    assert "policies created 1" in first.stdout

    [script] = live_server.api("GET", "/api/v1/scripts").json["data"]
    assert (script["name"], script["version"]) == ("disk-usage", "1.2.0")
    [policy] = live_server.api("GET", "/api/v1/policies?name=disk-usage").json["data"]
    assert policy["params"] == {"threshold_percent": 95, "mounts": ["/"]}
    job_id = int(first.stdout.split(" as job ")[1].split(":")[0])
    job = live_server.api("GET", f"/api/v1/jobs/{job_id}").json
    assert job["kind"] == "import" and job["status"] == "done"
    assert job["progress_done"] == job["progress_total"] == 3

    again = run_cli("aami-server", "import", str(bundle), "--key", str(release),
                    "--database", db)
    assert "keys unchanged 1" in again.stdout and "scripts unchanged 1" in again.stdout
    assert "policies unchanged 1" in again.stdout


def test_tampered_or_foreign_bundle_imports_nothing(live_server: ServerProcess,
                                                    tmp_path: Path) -> None:
    bundle, release = _make_bundle(tmp_path)
    data = bytearray(bundle.read_bytes())
    data[-100] ^= 0x55
    bundle.write_bytes(bytes(data))
    refused = run_cli("aami-server", "import", str(bundle), "--key", str(release),
                      "--database", live_server.database_url, check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].startswith("aami-server: bundle refused")
    assert live_server.api("GET", "/api/v1/scripts").json["data"] == []
    assert live_server.api("GET", "/api/v1/publisher-keys").json["data"] == []

    missing_key = run_cli("aami-server", "import", str(bundle), "--key",
                          str(tmp_path / "nope.pub"), "--database", live_server.database_url,
                          check=False)
    assert missing_key.returncode == 2 and "--key" in missing_key.stderr
    assert json.dumps(refused.stderr).count("Traceback") == 0
