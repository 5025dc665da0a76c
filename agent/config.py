"""Agent configuration: YAML file, then environment, then flags, over defaults.

Everything the agent is told lives in frozen dataclasses so that no module reads a
raw dict. A mistake in the file is a `ConfigError` whose message is one line naming
the key (`executor.output_limit: expected a size like 64KiB`); the CLI prints it and
exits 2. Unknown keys are errors, not silently ignored: a typo such as `pol_interval`
must not quietly leave the default in place on thousands of nodes.

Internal hard limits (grace periods, back-off cap, spool size, batch sizes) are not
operator settings; they live in `Limits` so that tests can shrink them.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from aami.units import parse_duration, parse_size

DEFAULT_CONFIG_PATH = "/etc/aami/agent.yaml"


class ConfigError(Exception):
    """A bad setting; the message is one line that names the key, flag or file."""


@dataclass(frozen=True)
class ServerSettings:
    url: str = ""
    ca_file: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class AgentSettings:
    hostname: str = ""
    state_dir: str = "/var/lib/aami-agent"
    poll_interval: float = 30.0
    heartbeat_interval: float = 30.0
    bootstrap_token_file: str | None = "/etc/aami/bootstrap-token"  # noqa: S105 - a path


@dataclass(frozen=True)
class TrustSettings:
    keys_dir: str = "/etc/aami/trusted-keys"


@dataclass(frozen=True)
class ExecutorSettings:
    max_concurrent: int = 4
    default_timeout: float = 60.0
    output_limit: int = 64 * 1024
    run_as: str | None = None


@dataclass(frozen=True)
class MetricsSettings:
    listen: str | None = "127.0.0.1:9101"
    textfile_dir: str | None = "/var/lib/node_exporter/textfile_collector"


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "info"
    format: str = "text"
    mask_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Hard limits and timings that are not operator settings (tests shrink them)."""

    kill_grace: float = 5.0  # seconds between SIGTERM and SIGKILL on timeout
    backoff_cap: float = 300.0  # longest wait between polls while the server fails
    poll_jitter: float = 0.1  # +-10 % on every poll interval
    interval_jitter_cap: float = 30.0  # most a node shifts an interval policy
    tick: float = 1.0  # scheduler resolution
    spool_max_records: int = 2000  # oldest results dropped (and counted) beyond this
    report_batch_size: int = 100
    max_script_bytes: int = 8 * 1024 * 1024
    max_response_bytes: int = 32 * 1024 * 1024
    shutdown_grace: float = 10.0  # running scripts get this long after SIGTERM
    force_tokens_kept: int = 500
    system_info_ttl: float = 600.0
    loop_max_failures: int = 5  # failures of one loop within the window: exit 1
    loop_failure_window: float = 600.0
    loop_backoff_cap: float = 60.0  # longest wait before a failed loop restarts
    loop_stall: float = 300.0  # a loop neither idle nor progressing this long is hung


@dataclass(frozen=True)
class AgentConfig:
    server: ServerSettings = field(default_factory=ServerSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    bootstrap_token: str | None = None
    config_path: str | None = None
    verbose: bool = False
    limits: Limits = field(default_factory=Limits)

    @property
    def state_dir(self) -> str:
        return self.agent.state_dir

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.bootstrap_token,) if s)


# --- converters: each returns the typed value or raises ValueError("expected ...") ---


def _text(value: object) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def _opt_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return _text(value)


def _url(value: object) -> str:
    text = _text(value).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"expected a URL like https://config:8080, got {value!r}")
    return text


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return value


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero like 30s, got {value!r}")
    return seconds


def _listen(value: object) -> str | None:
    if value is None or value in ("", "off", False):
        return None
    text = _text(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9101 or 'off', got {value!r}")
    return text


def _choice(*allowed: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = _text(value).lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return convert


def _patterns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of regular expressions, got {value!r}")
    for item in value:
        try:
            re.compile(_text(item))
        except re.error as exc:
            raise ValueError(f"invalid regular expression {item!r}: {exc}") from exc
    return tuple(str(v) for v in value)


_SECTIONS: dict[str, tuple[type, dict[str, Callable[[object], Any]]]] = {
    "server": (ServerSettings, {"url": _url, "ca_file": _opt_text, "timeout": _positive_duration}),
    "agent": (
        AgentSettings,
        {
            "hostname": _text,
            "state_dir": _text,
            "poll_interval": _positive_duration,
            "heartbeat_interval": _positive_duration,
            "bootstrap_token_file": _opt_text,
        },
    ),
    "trust": (TrustSettings, {"keys_dir": _text}),
    "executor": (
        ExecutorSettings,
        {
            "max_concurrent": _positive_int,
            "default_timeout": _positive_duration,
            "output_limit": parse_size,
            "run_as": _opt_text,
        },
    ),
    "metrics": (MetricsSettings, {"listen": _listen, "textfile_dir": _opt_text}),
    "logging": (
        LoggingSettings,
        {
            "level": _choice("debug", "info", "warning", "error"),
            "format": _choice("text", "json"),
            "mask_patterns": _patterns,
        },
    ),
}


def _convert(where: str, key: str, value: object) -> Any:
    section, _, name = key.partition(".")
    converter = _SECTIONS[section][1][name]
    try:
        return converter(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml  # only on the path that has a file to read

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _file_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten and validate the file's sections into {"section.key": typed value}."""
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section not in _SECTIONS:
            expected = ", ".join(_SECTIONS)
            raise ConfigError(f"{section}: unknown section (expected one of {expected})")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a mapping of keys")
        known = _SECTIONS[section][1]
        for key, value in body.items():
            if key not in known:
                raise ConfigError(f"{section}.{key}: unknown key")
            values[f"{section}.{key}"] = _convert(f"{section}.{key}", f"{section}.{key}", value)
    return values


def _read_token_file(path: str, *, explicit: bool) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"agent.bootstrap_token_file: {path} does not exist") from None
        return None
    except OSError as exc:
        raise ConfigError(
            f"agent.bootstrap_token_file: cannot read {path} ({exc.strerror})"
        ) from None
    return token or None


def load_config(
    path: str | None,
    overrides: Mapping[str, tuple[object, str]] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    token: str | None = None,
    verbose: bool = False,
) -> AgentConfig:
    """Defaults, then the YAML file, then `AAMI_SERVER`, then flags.

    `overrides` maps "section.key" to (raw value, flag name for error messages).
    `path=None` means the default path, which may be absent; an explicit path must exist.
    """
    env = os.environ if env is None else env
    explicit_file = path is not None
    path = path or DEFAULT_CONFIG_PATH
    data = _read_yaml(path) if explicit_file or os.path.exists(path) else {}
    values = _file_values(data)
    if env.get("AAMI_SERVER"):
        values["server.url"] = _convert("AAMI_SERVER", "server.url", env["AAMI_SERVER"])
    for key, (raw, flag) in (overrides or {}).items():
        if raw is not None:
            values[key] = _convert(flag, key, raw)

    sections: dict[str, Any] = {}
    for section, (cls, _) in _SECTIONS.items():
        mine = {k.partition(".")[2]: v for k, v in values.items() if k.startswith(section + ".")}
        sections[section] = cls(**mine)
    if not sections["agent"].hostname:
        sections["agent"] = replace(sections["agent"], hostname=socket.gethostname())

    bootstrap = token or env.get("AAMI_TOKEN") or None
    token_file = sections["agent"].bootstrap_token_file
    if bootstrap is None and token_file:
        bootstrap = _read_token_file(token_file, explicit="agent.bootstrap_token_file" in values)
    return AgentConfig(
        **sections,
        bootstrap_token=bootstrap,
        config_path=path if (explicit_file or os.path.exists(path)) else None,
        verbose=verbose,
    )


def config_keys() -> dict[str, tuple[str, ...]]:
    """Every accepted key per section (used by docs tests)."""
    return {name: tuple(f.name for f in fields(cls)) for name, (cls, _) in _SECTIONS.items()}
