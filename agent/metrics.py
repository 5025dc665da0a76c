"""Agent and script metrics: pure rendering, a tiny `/metrics` listener, textfiles.

Rendering is a pure function of a snapshot (testable without a socket). The listener
is `asyncio.start_server` answering `GET /metrics` with that text: a hand-written
renderer and server instead of `prometheus_client` + `aiohttp.web`, which would add
~3.5 MB to every node for the same bytes on the wire (the 40 MB budget, docs/agent.md).

Scripts may print `{"metrics": [{"name", "value", "labels"}]}` JSON or Prometheus text
on stdout; valid samples are exposed on `/metrics` and written atomically to
`textfile_dir/<script>.prom` for node_exporter's textfile collector (what the old
cron runner produced). Anything else on stdout is just output. A script's HELP and TYPE
are kept (JSON items may carry "help" and "type"); without them a family is untyped.

Series are global on a page: a sample that another script already exposes (same name
and labels), or a family another script declared with another TYPE, is refused and
counted, as are names under `aami_agent_` (the agent's own), so the page and every
textfile stay free of duplicates (which Prometheus and node_exporter reject whole).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aami.agent.atomicfile import atomic_write

log = logging.getLogger("aami.agent.metrics")

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_LINE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL_PAIR_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
RESERVED_PREFIX = "aami_agent_"
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
# Sample names that belong to the family without their suffix, by family type.
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count", "_created"),
             "summary": ("_sum", "_count", "_created"), "counter": ("_total", "_created")}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float
    family: str = ""  # the HELP/TYPE name, when it differs (histogram x: x_bucket, ...)
    type: str = "untyped"
    help: str = ""

    @property
    def family_name(self) -> str:
        return self.family or self.name


@dataclass
class AgentMetrics:
    """Mutable counters owned by the daemon; `snapshot()` feeds the pure renderer."""

    poll_buckets: list[int] = field(default_factory=lambda: [0] * len(POLL_BUCKETS))
    poll_count: int = 0
    poll_sum: float = 0.0
    polls_failed: int = 0
    heartbeats_failed: int = 0
    reports_failed: int = 0
    executed: int = 0
    failed: int = 0
    timeouts: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    last_successful_poll: float = 0.0
    spool_pending: int = 0
    spool_dropped: int = 0
    script_samples: dict[str, tuple[Sample, ...]] = field(default_factory=dict)
    loop_restarts: dict[str, int] = field(default_factory=dict)
    # reason (reserved, duplicate, type_conflict) -> samples refused
    script_samples_refused: dict[str, int] = field(default_factory=dict)

    def count_loop_restart(self, loop: str) -> None:
        self.loop_restarts[loop] = self.loop_restarts.get(loop, 0) + 1

    def observe_poll(self, seconds: float, ok: bool) -> None:
        for i, bound in enumerate(POLL_BUCKETS):
            if seconds <= bound:
                self.poll_buckets[i] += 1
        self.poll_count += 1
        self.poll_sum += seconds
        if ok:
            self.last_successful_poll = time.time()
        else:
            self.polls_failed += 1

    def count_refusal(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render_samples(samples: Sequence[Sample]) -> str:
    """Script samples grouped by family, each under its HELP (if any) and TYPE."""
    lines: list[str] = []
    seen: set[str] = set()
    for sample in sorted(samples, key=lambda s: (s.family_name, s.name)):
        family = sample.family_name
        if family not in seen:
            seen.add(family)
            if sample.help:
                lines.append(f"# HELP {family} {_escape_help(sample.help)}")
            lines.append(f"# TYPE {family} {sample.type}")
        lines.append(f"{sample.name}{_labels(sample.labels)} {_fmt(sample.value)}")
    return "\n".join(lines) + ("\n" if lines else "")


def render(m: AgentMetrics, version: str) -> str:
    """The whole `/metrics` page (Prometheus text format 0.0.4)."""
    out = [
        "# HELP aami_agent_info Agent version.",
        "# TYPE aami_agent_info gauge",
        f'aami_agent_info{{version="{_escape(version)}"}} 1',
        "# HELP aami_agent_poll_duration_seconds Time taken by assignment polls.",
        "# TYPE aami_agent_poll_duration_seconds histogram",
    ]
    for bound, count in zip(POLL_BUCKETS, m.poll_buckets, strict=True):
        out.append(f'aami_agent_poll_duration_seconds_bucket{{le="{bound}"}} {count}')
    out += [
        f'aami_agent_poll_duration_seconds_bucket{{le="+Inf"}} {m.poll_count}',
        f"aami_agent_poll_duration_seconds_sum {_fmt(m.poll_sum)}",
        f"aami_agent_poll_duration_seconds_count {m.poll_count}",
    ]
    counters = [
        ("aami_agent_polls_failed_total", "Polls that failed.", m.polls_failed),
        ("aami_agent_heartbeats_failed_total", "Heartbeats that failed.", m.heartbeats_failed),
        ("aami_agent_reports_failed_total", "Report attempts that left records spooled.",
         m.reports_failed),
        ("aami_agent_scripts_executed_total", "Script runs started.", m.executed),
        ("aami_agent_scripts_failed_total", "Script runs that did not succeed.", m.failed),
        ("aami_agent_scripts_timed_out_total", "Script runs killed at their timeout.", m.timeouts),
        ("aami_agent_spool_dropped_total", "Records dropped because the spool was full.",
         m.spool_dropped),
    ]
    for name, help_text, value in counters:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
    out += [
        "# HELP aami_agent_scripts_refused_total Scripts refused by verification, by reason.",
        "# TYPE aami_agent_scripts_refused_total counter",
    ]
    out += [
        f'aami_agent_scripts_refused_total{{reason="{_escape(r)}"}} {n}'
        for r, n in sorted(m.refused.items())
    ]
    out += [
        "# HELP aami_agent_script_samples_refused_total Script metric samples refused, by "
        "reason: reserved (named aami_agent_*), duplicate (another script's series), "
        "type_conflict (another script's family with another TYPE).",
        "# TYPE aami_agent_script_samples_refused_total counter",
    ]
    out += [
        f'aami_agent_script_samples_refused_total{{reason="{reason}"}} '
        f"{m.script_samples_refused.get(reason, 0)}"
        for reason in ("duplicate", "reserved", "type_conflict")
    ]
    out += [
        "# HELP aami_agent_loop_restarts_total Restarts of a long-lived loop after a failure.",
        "# TYPE aami_agent_loop_restarts_total counter",
    ]
    out += [
        f'aami_agent_loop_restarts_total{{loop="{_escape(name)}"}} {n}'
        for name, n in sorted(m.loop_restarts.items())
    ]
    gauges = [
        ("aami_agent_last_successful_poll_timestamp_seconds",
         "Unix time of the last successful poll.", m.last_successful_poll),
        ("aami_agent_spool_pending", "Results and events waiting to be reported.",
         float(m.spool_pending)),
    ]
    for name, help_text, level in gauges:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_fmt(level)}"]
    page = "\n".join(out) + "\n"
    scripts = [s for samples in m.script_samples.values() for s in samples]
    return page + render_samples(scripts)


# -- script output ---------------------------------------------------------------------


def _parse_json(text: str) -> list[Sample] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), list):
        return None
    samples = []
    for item in data["metrics"]:
        if not isinstance(item, dict):
            return None
        name, value, labels = item.get("name"), item.get("value"), item.get("labels") or {}
        kind, text = item.get("type", "untyped"), item.get("help", "")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and LABEL_RE.match(k) for k in labels
        ):
            return None
        if kind not in ("counter", "gauge", "untyped") or not isinstance(text, str):
            return None  # one JSON item is one sample: no histogram or summary parts
        samples.append(Sample(name, tuple(sorted((k, str(v)) for k, v in labels.items())),
                              float(value), type=kind, help=text))
    return samples or None


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def _family_of(name: str, types: dict[str, str]) -> str:
    if name in types:
        return name
    for kind in ("histogram", "summary", "counter"):
        for suffix in _SUFFIXES[kind]:
            base = name.removesuffix(suffix)
            if base != name and types.get(base) == kind:
                return base
    return name


def _parse_prometheus(text: str) -> list[Sample] | None:
    samples = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            words = line.split(None, 3)
            if len(words) >= 4 and words[1] == "HELP" and NAME_RE.match(words[2]):
                helps[words[2]] = _unescape(words[3])
            elif len(words) == 4 and words[1] == "TYPE" and NAME_RE.match(words[2]):
                if words[3] not in TYPES:
                    return None
                types[words[2]] = words[3]
            continue
        if not line:
            continue
        match = _LINE_RE.match(line)
        if not match:
            return None
        name, label_text, value_text = match.groups()
        labels: list[tuple[str, str]] = []
        if label_text:
            pos = 0
            while pos < len(label_text):
                pair = _LABEL_PAIR_RE.match(label_text, pos)
                if not pair or pair.end() == pos:
                    return None
                labels.append((pair.group(1), _unescape(pair.group(2))))
                pos = pair.end()
        try:
            value = float(value_text)
        except ValueError:
            return None
        family = _family_of(name, types)
        samples.append(Sample(name, tuple(sorted(labels)), value,
                              "" if family == name else family, types.get(family, "untyped"),
                              helps.get(family, "")))
    return samples or None


def parse_script_metrics(stdout: str) -> list[Sample] | None:
    """Samples when stdout is entirely metrics (JSON or Prometheus text), else None."""
    text = stdout.strip()
    if not text:
        return None
    if text.startswith("{"):
        return _parse_json(text)
    return _parse_prometheus(text)


def textfile_name(script_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", script_name) + ".prom"


def write_textfile(directory: str, script_name: str, samples: Sequence[Sample]) -> Path | None:
    """Atomically (re)write `<directory>/<script>.prom`; None when the dir is absent."""
    base = Path(directory)
    if not base.is_dir():
        return None
    path = base / textfile_name(script_name)
    atomic_write(path, render_samples(samples).encode(), mode=0o644)
    return path


# -- the listener ----------------------------------------------------------------------


async def serve_metrics(
    listen: str, page: Callable[[], str]
) -> asyncio.base_events.Server:
    """`GET /metrics` → the page; anything else → 404. One request per connection."""
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = request.split(b" ", 2)
            ok = len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics"
            status = b"200 OK" if ok else b"404 Not Found"
            try:
                body = page().encode() if ok else b"not found\n"
            except Exception:  # a rendering bug must not take the listener down
                log.exception("rendering /metrics failed")
                body, status = b"internal error\n", b"500 Internal Server Error"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4; "
                b"charset=utf-8\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host.strip("[]"), int(port))


def record_script_output(
    metrics: AgentMetrics, script_name: str, stdout: str, textfile_dir: str | None
) -> list[Sample] | None:
    samples = parse_script_metrics(stdout)
    if samples is None:
        return None
    others = {name: kept for name, kept in metrics.script_samples.items()
              if name != script_name}
    samples = _refuse(metrics, script_name, samples, others)
    if not samples:
        return None
    metrics.script_samples[script_name] = tuple(samples)
    if textfile_dir:
        try:
            if write_textfile(textfile_dir, script_name, samples) is None:
                log.debug("textfile_dir %s does not exist; .prom not written", textfile_dir)
        except OSError as exc:
            log.warning("cannot write %s metrics to %s: %s", script_name, textfile_dir, exc)
    return samples


def _refuse(metrics: AgentMetrics, script_name: str, samples: list[Sample],
            others: dict[str, tuple[Sample, ...]]) -> list[Sample]:
    """The samples a script may expose: not the agent's own names (a script must not
    shadow or fake them), not another script's series, not another script's family
    under another TYPE. The rest are counted and logged once per run, by reason."""
    series = {(s.name, s.labels): owner for owner, kept in others.items() for s in kept}
    types = {s.family_name: s.type for kept in others.values() for s in kept}
    kept: list[Sample] = []
    refused: dict[str, list[Sample]] = {"reserved": [], "duplicate": [], "type_conflict": []}
    for sample in samples:
        if sample.name.startswith(RESERVED_PREFIX):
            refused["reserved"].append(sample)
        elif types.get(sample.family_name, sample.type) != sample.type:
            refused["type_conflict"].append(sample)
        elif (sample.name, sample.labels) in series:
            refused["duplicate"].append(sample)
        else:
            kept.append(sample)
    for reason, dropped in refused.items():
        if dropped:
            count = metrics.script_samples_refused
            count[reason] = count.get(reason, 0) + len(dropped)
            log.warning("script %s: %d metric sample(s) refused (%s; first: %s)", script_name,
                        len(dropped), _REASONS[reason], dropped[0].name)
    return kept


_REASONS = {"reserved": f"names under {RESERVED_PREFIX} are the agent's own",
            "duplicate": "another script exposes the same series",
            "type_conflict": "another script declared that family with another TYPE"}
