"""The Nix flake: every file parses, and `nix flake check` evaluates it offline.

nixpkgs cannot be fetched here, so the flake is checked against the stand-in in
nix/stub-nixpkgs (`--override-input nixpkgs path:...`), which evaluates packages,
the dev shell and an example NixOS system built from both modules, without
building anything (`--no-build`). Each run uses its own store, HOME and Nix
config directory under tmp, with substituters and the flake registry turned
off, so nothing touches the network or /nix.

The flake is evaluated from a copy of the files it reads (flake.nix, nix/,
systemd/, pyproject.toml), as a `path:` flake: that checks exactly the working
tree, whether or not it is committed yet, without copying .venv into the store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.packaging.test_systemd import parse_unit
from tests.packaging.tools import REPO, require_tool

SYSTEM = "x86_64-linux"
FLAKE_FILES = ("flake.nix", "nix", "systemd", "pyproject.toml")
EXAMPLE = ".#nixosConfigurations.example.config"


@dataclass(frozen=True)
class NixRun:
    nix: str
    store: Path
    env: dict[str, str]

    def run(self, flake: Path, *args: str) -> subprocess.CompletedProcess[str]:
        command = [
            self.nix, "--extra-experimental-features", "nix-command flakes",
            "--store", str(self.store),
            "--option", "substituters", "",
            "--option", "flake-registry", "",
            "--option", "build-users-group", "",
            *args,
        ]
        return subprocess.run(command, cwd=flake, env=self.env, capture_output=True,
                              text=True, timeout=120)

    def eval_json(self, flake: Path, attr: str, apply: str | None = None) -> object:
        extra = ["--apply", apply] if apply else []
        result = self.run(flake, "eval", "--json", "--no-write-lock-file",
                          "--override-input", "nixpkgs", "path:./nix/stub-nixpkgs", attr, *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def read_store_file(self, store_path: str) -> str:
        """A file the evaluation wrote, read from this run's private store."""
        if store_path.startswith("/nix/store/"):
            return (self.store / store_path.lstrip("/")).read_text()
        return Path(store_path).read_text()


def copy_flake(dest: Path) -> Path:
    dest.mkdir()
    for name in FLAKE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy2(source, dest / name)
    return dest


def flake_check(nix: NixRun, flake: Path) -> subprocess.CompletedProcess[str]:
    return nix.run(flake, "flake", "check", "--no-build", "--no-write-lock-file",
                   "--override-input", "nixpkgs", "path:./nix/stub-nixpkgs")


@pytest.fixture(scope="module")
def nix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NixRun]:
    tool = require_tool("nix")
    home = tmp_path_factory.mktemp("nix-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "NIX_CONF_DIR": str(home / "etc"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    yield NixRun(tool, home / "store", env)


@pytest.fixture(scope="module")
def flake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_flake(tmp_path_factory.mktemp("flake") / "src")


def nix_files() -> list[Path]:
    return [REPO / "flake.nix", *sorted((REPO / "nix").rglob("*.nix"))]


def test_every_nix_file_parses() -> None:
    tool = require_tool("nix-instantiate")
    files = nix_files()
    assert len(files) >= 9
    for path in files:
        result = subprocess.run([tool, "--parse", str(path)], capture_output=True, text=True,
                                timeout=30, env={**os.environ, "HOME": "/nonexistent"})
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_flake_check_passes(nix: NixRun, flake: Path) -> None:
    result = flake_check(nix, flake)
    assert result.returncode == 0, result.stderr


def test_flake_check_rejects_a_mistyped_option(nix: NixRun, tmp_path: Path) -> None:
    bad = copy_flake(tmp_path / "src")
    example = bad / "nix/example-configuration.nix"
    example.write_text(example.read_text().replace("max_concurrent = 8;", 'max_concurrent = "8";'))
    result = flake_check(nix, bad)
    assert result.returncode != 0
    assert "services.aami-agent.settings.executor.max_concurrent" in result.stderr


def test_packages_and_dev_shell_evaluate(nix: NixRun, flake: Path) -> None:
    names = nix.eval_json(flake, f".#packages.{SYSTEM}",
                          "ps: builtins.mapAttrs (_: p: [ p.name p.meta.mainProgram ]) ps")
    assert names == {
        "aami": ["aami-0.1.0", "aami"],
        "aami-agent": ["aami-agent-0.1.0", "aami-agent"],
        "aami-server": ["aami-server-0.1.0", "aami-server"],
        "default": ["aami-0.1.0", "aami"],
    }
    shell = nix.eval_json(flake, f".#devShells.{SYSTEM}.default.drvPath")
    assert isinstance(shell, str) and shell.endswith(".drv")


@pytest.mark.parametrize("service", ["aami-agent", "aami-server"])
def test_module_units_carry_the_systemd_hardening(nix: NixRun, flake: Path, service: str) -> None:
    config = nix.eval_json(flake, f"{EXAMPLE}.systemd.services.{service}.serviceConfig")
    assert isinstance(config, dict)
    unit: dict[str, list[str]] = {}
    for section, key, value in parse_unit((REPO / "systemd" / f"{service}.service").read_text()):
        if section == "Service":
            unit.setdefault(key, []).append(value)
    for key, values in unit.items():
        got = config[key] if isinstance(config[key], list) else [config[key]]
        if key == "ExecStart":
            _, _, arguments = values[0].partition(" ")
            assert got[0].startswith("/nix/store/") and got[0].endswith(
                f"/bin/{service} {arguments}"
            )
        elif key != "ReadWritePaths":
            assert got == values, key
    if service == "aami-agent":  # the textfile directory follows the setting
        assert config["ReadWritePaths"] == ["-/var/lib/prometheus-node-exporter/textfile"]
    else:
        assert config["EnvironmentFile"] == "/run/secrets/aami-server.env"


def rendered_etc(nix: NixRun, flake: Path) -> dict[str, str]:
    etc = nix.eval_json(flake, f"{EXAMPLE}.environment.etc",
                        "etc: builtins.mapAttrs (_: e: toString e.source) etc")
    assert isinstance(etc, dict)
    return etc


def test_rendered_agent_yaml_loads_with_the_agent(nix: NixRun, flake: Path, tmp_path: Path) -> None:
    from aami.agent.config import load_config

    etc = rendered_etc(nix, flake)
    path = tmp_path / "agent.yaml"
    path.write_text(nix.read_store_file(etc["aami/agent.yaml"]))
    config = load_config(str(path), env={})
    assert config.server.url == "https://config.example:8443"
    assert config.server.ca_file == "/etc/aami/ca.pem"
    assert config.agent.poll_interval == 60.0
    assert config.executor.max_concurrent == 8
    assert config.metrics.textfile_dir == "/var/lib/prometheus-node-exporter/textfile"
    assert "aami/trusted-keys/ops.pub" in etc


def test_rendered_server_yaml_loads_with_the_server(
    nix: NixRun, flake: Path, tmp_path: Path
) -> None:
    from aami.server.config import load_config

    path = tmp_path / "server.yaml"
    path.write_text(nix.read_store_file(rendered_etc(nix, flake)["aami/server.yaml"]))
    config = load_config(str(path), environ={})
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8443)
    assert config.legacy_checks is True
    assert config.retention_seconds == 90 * 86400
    assert config.tls_key == "/etc/aami/tls/server.key"
    assert config.database_url == "sqlite:////var/lib/aami-server/aami.db"


def test_agent_options_mirror_every_agent_config_key(nix: NixRun, flake: Path) -> None:
    from aami.agent.config import config_keys

    options = nix.eval_json(
        flake, ".#nixosConfigurations.example.options.services.aami-agent.settings",
        "s: builtins.mapAttrs (_: section: builtins.attrNames section) s",
    )
    assert isinstance(options, dict)
    assert {k: sorted(v) for k, v in options.items()} == {
        k: sorted(v) for k, v in config_keys().items()
    }


def test_rendered_yaml_is_plain_yaml(nix: NixRun, flake: Path) -> None:
    etc = rendered_etc(nix, flake)
    data = yaml.safe_load(nix.read_store_file(etc["aami/server.yaml"]))
    assert data["compat"] == {"legacy_checks": True}


def test_the_nix_package_needs_what_pip_installs() -> None:
    # pyproject.toml is what pip installs; nix/package.nix must name the same Python
    # packages, or the Nix-built server fails at its first import.
    import re
    import tomllib

    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0].lower() for spec in wanted}
    names = {"psycopg2" if n == "psycopg2-binary" else n for n in names}  # see package.nix
    package = (REPO / "nix/package.nix").read_text()
    listed = re.search(r"dependencies = with python3Packages; \[(.*?)\];", package, re.S)
    assert listed is not None
    assert set(listed.group(1).split()) == names
