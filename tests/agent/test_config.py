"""Configuration: file, environment and flags over defaults; one-line errors, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aami.agent.config import ConfigError, config_keys, load_config

AGENT = [sys.executable, "-m", "aami.agent.cli"]

FULL = """
server:   {url: "https://config:8080", ca_file: /etc/aami/ca.pem, timeout: 10s}
agent:    {hostname: node-01, state_dir: /tmp/s, poll_interval: 45s,
           heartbeat_interval: 1m, bootstrap_token_file: null}
trust:    {keys_dir: /etc/aami/trusted-keys}
executor: {max_concurrent: 2, default_timeout: 2m, output_limit: 1MiB, run_as: aami-runner}
metrics:  {listen: "127.0.0.1:9200", textfile_dir: /var/lib/node_exporter/textfile_collector}
logging:  {level: debug, format: json, mask_patterns: ["password=\\\\S+"]}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_for_a_node(tmp_path: Path) -> None:
    config = load_config(None, env={})
    assert config.agent.state_dir == "/var/lib/aami-agent"
    assert config.trust.keys_dir == "/etc/aami/trusted-keys"
    assert config.agent.poll_interval == 30 and config.executor.output_limit == 65536
    assert config.agent.hostname  # the machine's name


def test_every_documented_key_is_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), env={})
    assert config.server.url == "https://config:8080" and config.server.timeout == 10
    assert config.agent.poll_interval == 45 and config.agent.heartbeat_interval == 60
    assert config.executor.max_concurrent == 2 and config.executor.default_timeout == 120
    assert config.executor.output_limit == 1024 * 1024 and config.executor.run_as == "aami-runner"
    assert config.metrics.listen == "127.0.0.1:9200"
    assert config.logging.format == "json" and config.logging.mask_patterns == ("password=\\S+",)
    assert set(config_keys()) == {"server", "agent", "trust", "executor", "metrics", "logging"}


def test_flags_override_env_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    env = {"AAMI_SERVER": "http://from-env:1", "AAMI_TOKEN": "env-token"}
    config = load_config(path, env=env)
    assert config.server.url == "http://from-env:1" and config.bootstrap_token == "env-token"
    config = load_config(path, {"server.url": ("http://flag:2", "--server"),
                                "agent.poll_interval": ("5m", "--poll-interval")},
                         env=env, token="flag-token")
    assert config.server.url == "http://flag:2" and config.agent.poll_interval == 300
    assert config.bootstrap_token == "flag-token"


def test_bootstrap_token_file(tmp_path: Path) -> None:
    token = tmp_path / "bootstrap-token"
    token.write_text("tok-from-file\n")
    config = load_config(write(tmp_path, f"agent: {{bootstrap_token_file: {token}}}"), env={})
    assert config.bootstrap_token == "tok-from-file"
    with pytest.raises(ConfigError, match=r"agent.bootstrap_token_file: .* does not exist"):
        load_config(write(tmp_path, f"agent: {{bootstrap_token_file: {token}.x}}"), env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executor: {output_limit: lots}", "executor.output_limit: expected a size like 64KiB"),
        ("agent: {poll_interval: soon}", "agent.poll_interval: expected a duration like 30s"),
        ("agent: {pol_interval: 30s}", "agent.pol_interval: unknown key"),
        ("agentt: {}", "agentt: unknown section"),
        ("executor: {max_concurrent: 0}", "executor.max_concurrent: expected a whole number"),
        ("metrics: {listen: nowhere}", "metrics.listen: expected HOST:PORT"),
        ("logging: {level: loud}", "logging.level: expected one of"),
        ("server: {url: config:8080}", "server.url: expected a URL"),
        ("server: [1, 2", "not valid YAML"),
        ("- just a list", "expected a mapping of sections"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(write(tmp_path, text), env={})


def test_bad_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--poll-interval: expected a duration"):
        load_config(None, {"agent.poll_interval": ("often", "--poll-interval")}, env={})


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})}, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "{bad}"], "executor.output_limit: expected a size like 64KiB"),
        (["--config", "/nonexistent/agent.yaml"], "/nonexistent/agent.yaml: cannot read"),
        (["--poll-interval", "often"], "--poll-interval: expected a duration"),
        (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
        ([], "server.url: not set"),
    ],
)
def test_real_cli_exits_2_with_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    bad = write(tmp_path, "executor: {output_limit: lots}")
    args = [bad if a == "{bad}" else a for a in args]
    proc = cli("run", "--state-dir", str(tmp_path / "s"), *args, env={"AAMI_SERVER": ""})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aami-agent: ") and expected in lines[0], lines
    assert "Traceback" not in proc.stderr


def test_real_cli_unreadable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("agent: {}\n")
    path.chmod(0)
    if os.geteuid() == 0:
        path = tmp_path  # root reads anything; a directory is unreadable as a file
    proc = cli("status", "--config", str(path))
    assert proc.returncode == 2 and "cannot read the configuration file" in proc.stderr


def test_version() -> None:
    proc = cli("version")
    assert proc.returncode == 0 and proc.stdout.startswith("aami-agent ")
