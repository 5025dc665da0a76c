"""The container files, checked without a Docker engine (none runs here).

What an image would run is checked against the project itself: every COPY source
exists, the final stage runs as a user it created (not root), the ENTRYPOINT is a
console script of pyproject.toml whose target function exists, the CMD's flags are
flags the real program accepts, and the HEALTHCHECK command, run for real, passes
against a real aami-server started with the image's own arguments and fails
when nothing answers. compose.yaml is checked for consistency between services.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.packaging.tools import REPO

CONTAINERS = REPO / "containers"
BIN = Path(sys.executable).parent
IMAGES = {"server": "aami-server", "agent": "aami-agent"}


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """Instructions grouped by build stage (one list per FROM)."""
    stages: list[list[Instruction]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        name, _, args = logical.partition(" ")
        logical = ""
        if name.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(name.upper(), args.strip()))
    return stages


def final_stage(image: str) -> list[Instruction]:
    return parse_dockerfile(CONTAINERS / f"{image}.Dockerfile")[-1]


def exec_form(stage: list[Instruction], name: str) -> list[str]:
    args = [i.args for i in stage if i.name == name][-1]
    if name == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4:]
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def console_scripts() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    scripts: dict[str, str] = data["project"]["scripts"]
    return scripts


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copy_sources_exist(image: str) -> None:
    for stage in parse_dockerfile(CONTAINERS / f"{image}.Dockerfile"):
        for inst in stage:
            if inst.name == "COPY" and "--from=" not in inst.args:
                *sources, _dest = inst.args.split()
                for source in sources:
                    assert (REPO / source).exists(), f"{image}: COPY {source}: missing"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runs_as_a_non_root_user_it_creates(image: str) -> None:
    stage = final_stage(image)
    users = [i.args for i in stage if i.name == "USER"]
    assert users, f"{image}: no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(i.args for i in stage if i.name == "RUN")
    assert "useradd" in created
    assert created.split("useradd", 1)[1].split("&&")[0].split()[-1] == user


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_a_console_script_that_exists(image: str) -> None:
    entry = exec_form(final_stage(image), "ENTRYPOINT")
    assert entry == [f"/opt/aami/bin/{IMAGES[image]}"]
    target = console_scripts()[IMAGES[image]]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_cmd_flags_are_accepted_by_the_program(image: str) -> None:
    command = exec_form(final_stage(image), "CMD")
    subcommand = command[0]
    result = subprocess.run([str(BIN / IMAGES[image]), subcommand, "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in (arg for arg in command[1:] if arg.startswith("--")):
        assert flag in result.stdout, f"{image}: {subcommand} has no {flag}"


def test_agent_image_config_loads_with_the_agent() -> None:
    from aami.agent.config import load_config

    stage = final_stage("agent")
    assert any(i.args.split() == ["containers/agent.yaml", "/etc/aami/agent.yaml"]
               for i in stage if i.name == "COPY")
    config = load_config(str(CONTAINERS / "agent.yaml"), env={"AAMI_SERVER": "http://server:8080"})
    assert config.executor.run_as is None  # a non-root agent cannot switch users
    assert config.agent.state_dir == "/var/lib/aami-agent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_healthcheck(command: list[str], port: int) -> int:
    # The image's own python runs it; here the venv's python stands in.
    argv = [sys.executable, *command[1:]]
    argv = [a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in argv]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def test_server_healthcheck_passes_against_the_real_server(tmp_path: Path) -> None:
    stage = final_stage("server")
    health = exec_form(stage, "HEALTHCHECK")
    assert health[0] == "/opt/aami/bin/python"
    assert "http://127.0.0.1:8080/health" in " ".join(health)
    cmd = exec_form(stage, "CMD")
    assert cmd[cmd.index("--listen") + 1] == "0.0.0.0:8080"
    assert "EXPOSE" in {i.name for i in stage} and "8080" in [
        i.args for i in stage if i.name == "EXPOSE"
    ]

    port = free_port()
    args = [a.replace("0.0.0.0:8080", f"127.0.0.1:{port}") for a in cmd]
    env = {**os.environ, "AAMI_DATABASE_URL": f"sqlite:///{tmp_path / 'aami.db'}"}
    server = subprocess.Popen([str(BIN / "aami-server"), *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while run_healthcheck(health, port) != 0:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "server never became healthy"
            time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert run_healthcheck(health, port) != 0  # nothing answers: unhealthy


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load((CONTAINERS / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_services_build_our_images_as_non_root() -> None:
    services = load_compose()["services"]
    assert set(services) == {"postgres", "server", "agent"}
    for name, image in IMAGES.items():
        build = services[name]["build"]
        assert (CONTAINERS / build["context"] / build["dockerfile"]).resolve() == (
            CONTAINERS / f"{image.removeprefix('aami-')}.Dockerfile"
        )
    assert services["postgres"]["user"] not in ("root", "0")


def test_compose_wiring_is_consistent() -> None:
    compose = load_compose()
    services = compose["services"]
    pg_env = services["postgres"]["environment"]
    url = urlparse(services["server"]["environment"]["AAMI_DATABASE_URL"])
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password, url.path) == (
        pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], "/" + pg_env["POSTGRES_DB"]
    )
    from aami.server.config import validate_database_url

    validate_database_url(url.geturl())
    # The agent reaches the server by service name on the port the image listens on.
    assert services["agent"]["environment"]["AAMI_SERVER"] == "http://server:8080"
    assert services["server"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "/health" in " ".join(services["server"]["healthcheck"]["test"])
    assert services["server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["agent"]["depends_on"]["server"]["condition"] == "service_healthy"
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
             if not v.startswith(".")}
    assert named <= set(compose["volumes"])


def test_compose_usage_comment_names_real_commands() -> None:
    lines = [line.lstrip("# ").strip() for line in (CONTAINERS / "compose.yaml").read_text()
             .splitlines() if "aami-server " in line and line.startswith("#")]
    assert lines
    for line in lines:
        words = shlex.split(line[line.index("aami-server "):].rstrip(")`"))
        result = subprocess.run([str(BIN / "aami-server"), *words[1:3], "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{line}: {result.stderr}"
