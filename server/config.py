"""Server configuration: YAML file, then environment, then flags.

Precedence: flags > environment (`AAMI_DATABASE_URL`) > file
(`/etc/aami/server.yaml` when present) > defaults. Unknown keys and bad values
raise `ConfigError` with a one-line message naming the key; the CLI prints it and
exits 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from aami.units import parse_duration, parse_size

DEFAULT_CONFIG_PATH = Path("/etc/aami/server.yaml")
DEFAULT_DATABASE_URL = "sqlite:///aami.db"


class ConfigError(Exception):
    """A bad configuration value; str() is one line naming the key."""


@dataclass(frozen=True)
class Limits:
    """Request and storage limits (hard caps, not tunables scattered in code)."""

    max_body_bytes: int = 1024 * 1024
    # JSON nesting of a request body: our schemas nest a few levels and policy
    # parameters are small objects; 32 leaves room and stops recursion-depth attacks.
    max_json_depth: int = 32
    max_execution_batch: int = 500
    max_output_bytes: int = 64 * 1024
    list_limit_default: int = 50
    list_limit_max: int = 500


@dataclass(frozen=True)
class ServerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    tls_cert: str | None = None
    tls_key: str | None = None
    # Answer the old cron runner's unauthenticated GET /checks/... (migration aid).
    legacy_checks: bool = False
    # Executions older than this are pruned in the background; 0 keeps them forever.
    retention_seconds: float = 30 * 86400
    # Agent defaults when no group sets them.
    poll_interval_seconds: int = 30
    heartbeat_interval_seconds: int = 30
    db_threads: int = 8
    # Server processes on the listening port (`server/supervisor.py`); one per core.
    processes: int = 1
    # Share the port with other aami-server processes (SO_REUSEPORT); set by the
    # supervisor for its children.
    reuse_port: bool = False
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)


_SECTIONS: dict[str, set[str]] = {
    "server": {"listen", "tls_cert", "tls_key", "db_threads", "processes"},
    "database": {"url"},
    "compat": {"legacy_checks"},
    "retention": {"executions"},
    "agents": {"poll_interval", "heartbeat_interval"},
    "limits": {"max_body", "max_execution_batch", "max_output"},
    "logging": {"level"},
}


def parse_listen(value: str, *, key: str = "listen") -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) into its parts."""
    host, sep, port_text = str(value).rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port_text)  # noqa: S104 - operator's choice


def validate_database_url(url: str, *, key: str = "database") -> str:
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        raise ConfigError(
            f"{key}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB, got {url!r}"
        )
    return url


def _apply_file(config: ServerConfig, data: Mapping[str, Any], source: str) -> ServerConfig:
    changes: dict[str, Any] = {}
    limits = config.limits
    for section, values in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown key {section!r}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {section}: expected a mapping")
        for key, value in values.items():
            name = f"{section}.{key}"
            if key not in _SECTIONS[section]:
                raise ConfigError(f"{source}: unknown key {name!r}")
            try:
                changes, limits = _apply_key(name, value, changes, limits)
            except ValueError as exc:
                raise ConfigError(f"{source}: {name}: {exc}") from None
    return replace(config, limits=limits, **changes)


def _apply_key(
    name: str, value: Any, changes: dict[str, Any], limits: Limits
) -> tuple[dict[str, Any], Limits]:
    if name == "server.listen":
        changes["listen_host"], changes["listen_port"] = parse_listen(value, key=name)
    elif name in ("server.tls_cert", "server.tls_key"):
        changes[name.split(".")[1]] = str(value)
    elif name == "server.db_threads":
        changes["db_threads"] = _positive_int(value)
    elif name == "server.processes":
        changes["processes"] = _positive_int(value)
    elif name == "database.url":
        changes["database_url"] = validate_database_url(str(value), key=name)
    elif name == "compat.legacy_checks":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        changes["legacy_checks"] = value
    elif name == "retention.executions":
        changes["retention_seconds"] = parse_duration(value)
    elif name == "agents.poll_interval":
        changes["poll_interval_seconds"] = max(1, int(parse_duration(value)))
    elif name == "agents.heartbeat_interval":
        changes["heartbeat_interval_seconds"] = max(1, int(parse_duration(value)))
    elif name == "limits.max_body":
        limits = replace(limits, max_body_bytes=parse_size(value))
    elif name == "limits.max_execution_batch":
        limits = replace(limits, max_execution_batch=_positive_int(value))
    elif name == "limits.max_output":
        limits = replace(limits, max_output_bytes=parse_size(value))
    elif name == "logging.level":
        if str(value).lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("expected debug, info, warning or error")
        changes["log_level"] = str(value).lower()
    return changes, limits


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def load_config(
    path: str | None = None,
    *,
    listen: str | None = None,
    database: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    processes: int | None = None,
    reuse_port: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> ServerConfig:
    """Build the configuration; `path=None` reads the default file only if it exists."""
    config = ServerConfig()
    file_path = Path(path) if path else DEFAULT_CONFIG_PATH
    if path or file_path.exists():
        try:
            data = yaml.safe_load(file_path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file_path}: not valid YAML: {_first_line(exc)}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file_path}: expected a mapping at the top level")
        config = _apply_file(config, data, str(file_path))
    if env_url := environ.get("AAMI_DATABASE_URL"):
        config = replace(
            config, database_url=validate_database_url(env_url, key="AAMI_DATABASE_URL")
        )
    if database:
        config = replace(config, database_url=validate_database_url(database, key="--database"))
    if listen:
        host, port = parse_listen(listen, key="--listen")
        config = replace(config, listen_host=host, listen_port=port)
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    if tls_cert:
        config = replace(config, tls_cert=tls_cert, tls_key=tls_key)
    if processes is not None:
        if processes < 1:
            raise ConfigError(f"--processes: must be at least 1, got {processes}")
        config = replace(config, processes=processes)
    if reuse_port:
        config = replace(config, reuse_port=True)
    return config


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
