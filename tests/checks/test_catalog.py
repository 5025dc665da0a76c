"""The catalog as a whole: every check signs and verifies with the real CLI, `make
catalog` builds what `aami bundle build --scripts` takes, and the docs name every metric."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from aami import trust
from aami.bundle.build import BINARIES
from tests.checks.replay import CHECKS, ROOT
from tests.harness import ServerProcess, require, run_cli

BIN = Path(sys.executable).parent
NAMES = sorted(p.parent.name for p in CHECKS.glob("*/manifest.json"))
# The checks issue 16 asks for; a folder added or lost without updating this fails.
CATALOG = sorted(["gpu-health", "gpu-xid", "nvlink", "infiniband", "nvme-health", "disk-smart",
                  "parallel-fs", "mounts", "time-sync", "version-drift"])
METRIC = re.compile(r"\baami_[a-z0-9_]+[a-z0-9]\b")


def aami(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "aami"), *args], capture_output=True, text=True,
                          check=False, timeout=60)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The catalog signed by `make catalog` with a throwaway key: (keys dir, catalog dir)."""
    require(shutil.which("make") is not None, "make is needed for `make catalog`")
    base = tmp_path_factory.mktemp("catalog")
    assert aami("keys", "generate", "--out", str(base / "keys"), "--name", "ops").returncode == 0
    out = base / "catalog"
    done = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "catalog",
         f"PUBLISHER_KEY={base / 'keys' / 'ops.key'}", f"CATALOG_DIR={out}",
         "RUNNER_USER=gpu-mon"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "development key" not in done.stdout + done.stderr
    return base / "keys", out


def test_make_catalog_without_a_key_warns_and_uses_a_development_key(tmp_path: Path) -> None:
    require(shutil.which("make") is not None, "make is needed for `make catalog`")
    dev_key = tmp_path / "dev-keys" / "dev-publisher.key"
    done = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "catalog", f"CATALOG_DIR={tmp_path / 'out'}",
         f"DEV_PUBLISHER_KEY={dev_key}"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "WARNING: no PUBLISHER_KEY given" in done.stderr
    assert "DEVELOPMENT key" in done.stderr and str(dev_key) in done.stderr
    keys = tmp_path / "trusted"
    keys.mkdir()
    (keys / "dev.pub").write_bytes(dev_key.with_suffix(".pub").read_bytes())
    verified = aami("script", "verify", str(tmp_path / "out" / "mounts.signed.json"),
                    "--trusted-keys", str(keys))
    assert verified.returncode == 0, verified.stderr


def test_catalog_holds_exactly_the_checks(signed: tuple[Path, Path]) -> None:
    _, out = signed
    assert NAMES == CATALOG
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.signed.json" for n in NAMES]


@pytest.mark.parametrize("name", NAMES)
def test_check_verifies_with_its_defaults_and_run_as(signed: tuple[Path, Path],
                                                      name: str) -> None:
    keys, out = signed
    manifest = json.loads((CHECKS / name / "manifest.json").read_text())
    user = "root" if manifest["run_as"] == "root" else "gpu-mon"
    document = out / f"{name}.signed.json"
    done = aami("script", "verify", str(document), "--trusted-keys", str(keys),
                "--params", "{}", "--run-as", user)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {name} {manifest['version']} ")
    statement = trust.ScriptStatement.from_payload(
        trust.SignedScript.from_json(json.loads(document.read_text())).envelope.payload)
    assert statement.run_as == (user,)
    assert statement.interpreter == manifest["interpreter"] == "python3"
    # Root is refused for an unprivileged check: a policy cannot escalate it.
    if user != "root":
        refused = aami("script", "verify", str(document), "--trusted-keys", str(keys),
                       "--run-as", "root")
        assert refused.returncode == 1 and "run_as" in refused.stderr


def test_bundle_build_takes_the_catalog_and_the_example_policies(
        signed: tuple[Path, Path], tmp_path: Path) -> None:
    keys, out = signed
    # The binaries are not what is under test here: empty stand-ins fill dist/ so that
    # the real `aami bundle build` runs; the catalog and policies are the real inputs.
    dist = tmp_path / "dist"
    dist.mkdir()
    for binary in BINARIES:
        (dist / binary).write_bytes(b"stand-in\n")
    assert aami("keys", "generate", "--out", str(tmp_path), "--name", "release").returncode == 0
    bundle = tmp_path / "bundle.tar.gz"
    done = aami("bundle", "build", "--key", str(tmp_path / "release.key"), "--out", str(bundle),
                "--dist", str(dist), "--scripts", str(out), "--trusted-keys", str(keys),
                "--policies", str(ROOT / "examples" / "policies" / "gpu-nodes.yaml"), "--quiet")
    assert done.returncode == 0, done.stderr
    verified = aami("bundle", "verify", str(bundle), "--key", str(tmp_path / "release.pub"),
                    "--quiet")
    assert verified.returncode == 0, verified.stderr
    with tarfile.open(bundle) as archive:
        members = {Path(m.name).as_posix().split("/", 1)[-1] for m in archive.getmembers()}
    for name in NAMES:
        assert f"scripts/{name}.signed.json" in members, sorted(members)
    assert "policies/gpu-nodes.yaml" in members
    # The site imports it (`aami-server import`, its gpu-nodes group made first, as
    # docs/checks.md says): every check lands. This catalog was signed for the runner
    # user gpu-mon, so the example policies that name aami-runner are refused by the
    # signed statement, and only the root ones are created: a site that signs for
    # another user edits run_as in its policies.
    root_checks = [n for n in NAMES
                   if json.loads((CHECKS / n / "manifest.json").read_text())["run_as"] == "root"]
    with ServerProcess.start(f"sqlite:///{tmp_path / 'site.db'}", tmp_path) as server:
        assert server.api("POST", "/api/v1/groups",
                          json_body={"name": "gpu-nodes"}).status == 201
        imported = run_cli("aami-server", "import", str(bundle), "--key",
                           str(tmp_path / "release.pub"), "--database", server.database_url)
        assert f"scripts stored {len(NAMES)}" in imported.stdout, imported.stdout
        assert f"policies created {len(root_checks)}" in imported.stdout, imported.stdout
        assert imported.stderr.count("RUN_AS_NOT_ALLOWED") == len(NAMES) - len(root_checks)
        stored = server.api("GET", "/api/v1/scripts?limit=500").json["data"]
        assert sorted(s["name"] for s in stored) == NAMES


def test_unknown_schema_keyword_is_refused_at_signing(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    assert aami("keys", "generate", "--out", str(tmp_path / "keys")).returncode == 0
    schema = tmp_path / "schema.json"
    schema.write_text('{"properties": {"x": {"type": "integer", "exclusiveMinimum": 0}}}')
    done = aami("script", "sign", str(CHECKS / "gpu-health" / "check.py"), "--key",
                str(tmp_path / "keys" / "publisher.key"), "--name", "x", "--version", "1.0.0",
                "--params-schema", str(schema), "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "exclusiveMinimum" in done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_readme_and_docs_name_every_metric_the_check_prints(name: str) -> None:
    source = (CHECKS / name / "check.py").read_text()
    printed = set(METRIC.findall(source))
    assert printed, name
    assert not any(m.startswith("aami_agent_") for m in printed)
    readme = set(METRIC.findall((CHECKS / name / "README.md").read_text()))
    docs = set(METRIC.findall((ROOT / "docs" / "checks.md").read_text()))
    assert printed <= readme, f"README.md of {name} misses {sorted(printed - readme)}"
    assert printed <= docs, f"docs/checks.md misses {sorted(printed - docs)}"


def test_no_two_checks_print_the_same_metric() -> None:
    # The agent exposes every script's series on one page: a shared name would collide.
    owners: dict[str, str] = {}
    for name in NAMES:
        for metric in set(METRIC.findall((CHECKS / name / "check.py").read_text())):
            assert metric not in owners, f"{metric} printed by {owners[metric]} and {name}"
            owners[metric] = name


def test_docs_alert_rules_parse_and_name_only_metrics_the_catalog_prints() -> None:
    printed = set()
    for name in NAMES:
        printed |= set(METRIC.findall((CHECKS / name / "check.py").read_text()))
    text = (ROOT / "docs" / "checks.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == len(NAMES)  # one block of alert rules per check
    for block in blocks:
        rules = yaml.safe_load(block)
        assert isinstance(rules, list) and rules
        for rule in rules:
            assert set(rule) <= {"alert", "expr", "for"} and {"alert", "expr"} <= set(rule)
            used = set(METRIC.findall(rule["expr"]))
            assert used and used <= printed, f"{rule['alert']}: {sorted(used - printed)}"


@pytest.mark.parametrize("name", NAMES)
def test_readme_documents_every_parameter(name: str) -> None:
    schema = json.loads((CHECKS / name / "schema.json").read_text())
    readme = (CHECKS / name / "README.md").read_text()
    docs = (ROOT / "docs" / "checks.md").read_text()
    for parameter in schema.get("properties", {}):
        assert f"`{parameter}`" in readme, f"{name}/README.md: {parameter}"
        assert f"`{parameter}`" in docs, f"docs/checks.md: {name}.{parameter}"


def _build_catalog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECKS / "build_catalog.py"), *args],
                          capture_output=True, text=True, check=False, timeout=120)


def test_every_check_carries_the_shared_helpers_unchanged() -> None:
    """One source (checks/shared_helpers.py) for the block each single-file check holds."""
    sys.path.insert(0, str(CHECKS))
    try:
        import build_catalog
    finally:
        sys.path.remove(str(CHECKS))
    assert [p.parent.name for p in build_catalog.drifted()] == [], \
        "run python checks/build_catalog.py --sync-helpers"
    block = build_catalog.shared_helpers()
    assert "def load_params" in block and "class Metrics" in block
    assert all(block in (CHECKS / name / "check.py").read_text() for name in NAMES)


def test_a_drifted_copy_is_refused_at_signing_and_synced(tmp_path: Path) -> None:
    copy = tmp_path / "checks"
    shutil.copytree(CHECKS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    nvlink = copy / "nvlink" / "check.py"
    nvlink.write_text(nvlink.read_text().replace('    """AAMI_PARAMS, else JSON on stdin',
                                                 '    """Edited here, AAMI_PARAMS, else'))
    (copy / "keys").mkdir()
    assert aami("keys", "generate", "--out", str(copy / "keys")).returncode == 0
    refused = subprocess.run(
        [sys.executable, str(copy / "build_catalog.py"), "--key",
         str(copy / "keys" / "publisher.key"), "--out", str(tmp_path / "out"),
         "--aami", str(BIN / "aami")], capture_output=True, text=True, check=False, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: nvlink/check.py: its shared helpers differ from checks/shared_helpers.py; "
        "run python checks/build_catalog.py --sync-helpers")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    mode = nvlink.stat().st_mode
    synced = subprocess.run([sys.executable, str(copy / "build_catalog.py"), "--sync-helpers"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert synced.returncode == 0 and synced.stdout.startswith("updated 1 checks"), synced
    assert nvlink.read_text() == (CHECKS / "nvlink" / "check.py").read_text()
    assert nvlink.stat().st_mode == mode
    assert not list(copy.glob("*/.check.py.tmp"))
    usage = _build_catalog()
    assert usage.returncode == 2 and "--key and --out are required" in usage.stderr
