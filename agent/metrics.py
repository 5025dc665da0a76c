"""Agent and script metrics: pure rendering, a tiny `/metrics` listener, textfiles.

Rendering is a pure function of a snapshot (testable without a socket). The listener
is `asyncio.start_server` answering `GET /metrics` with that text: a hand-written
renderer and server instead of `prometheus_client` + `aiohttp.web`, which would add
~3.5 MB to every node for the same bytes on the wire (the 40 MB budget, docs/agent.md).

Scripts may print `{"metrics": [{"name", "value", "labels"}]}` JSON or Prometheus text
on stdout; valid samples are exposed on `/metrics` and written atomically to
`textfile_dir/<script>.prom` for node_exporter's textfile collector (what the old
cron runner produced). Anything else on stdout is just output.
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


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float


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
    script_samples_refused: int = 0

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


def render_samples(samples: Sequence[Sample]) -> str:
    """Samples grouped by name, one `# TYPE untyped` per name (script metrics)."""
    lines: list[str] = []
    seen: set[str] = set()
    for sample in sorted(samples, key=lambda s: s.name):
        if sample.name not in seen:
            seen.add(sample.name)
            lines.append(f"# TYPE {sample.name} untyped")
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
        ("aami_agent_script_samples_refused_total",
         "Script metric samples refused because their name is the agent's (aami_agent_*).",
         m.script_samples_refused),
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
        if not isinstance(name, str) or not NAME_RE.match(name):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and LABEL_RE.match(k) for k in labels
        ):
            return None
        samples.append(Sample(name, tuple(sorted((k, str(v)) for k, v in labels.items())),
                              float(value)))
    return samples or None


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def _parse_prometheus(text: str) -> list[Sample] | None:
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
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
        samples.append(Sample(name, tuple(sorted(labels)), value))
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
    # A script must not shadow or fake the agent's own series.
    own = [x for x in samples if x.name.startswith(RESERVED_PREFIX)]
    if own:
        metrics.script_samples_refused += len(own)
        log.warning("script %s printed %d sample(s) named %s*, which are the agent's own; "
                    "refused (first: %s)", script_name, len(own), RESERVED_PREFIX, own[0].name)
        samples = [x for x in samples if not x.name.startswith(RESERVED_PREFIX)]
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

