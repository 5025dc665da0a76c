"""Server load benchmark: simulated agents against real `aami-server` processes on PostgreSQL.

    python -m tests.bench.server_load --agents 5000 --duration 300s --server-processes 2 --tls

What it does, all on loopback and all bounded in time:

1. creates a fresh PostgreSQL database (dropped at the end), starts K server
   processes on it (each on its own port: a load balancer's view), and seeds an
   admin token, a bootstrap token, two signed scripts and two global interval
   policies running every 60 s;
2. in THIS process (separate from the servers), simulates N agents with asyncio and
   aiohttp: each registers at a jittered moment in the ramp, downloads its scripts,
   then polls assignments every 30 s with its ETag, heart-beats every 30 s and
   reports two executions every 60 s, each loop with a random phase;
3. prints agents simulated, requests/s, p50/p99 latency per endpoint (client side,
   so it includes queueing), errors, the servers' RSS, CPU, CPU per request and
   event-loop lag, PostgreSQL's CPU, the load generator's own CPU and event-loop
   lag, and the servers' own per-route mean latency (from their /metrics), which
   tells server time from queueing.

Connections (`--connections`): by default each simulated agent has ONE kept-alive
connection of its own, used by all its requests in turn and reopened after a
failure, as the real agent does (agent/transport.py); the server sees one
connection per node, and with `--shared-port` the kernel keeps each node on one
process. `per-request` opens a connection for every request (the agent before
issue 11); `pooled` shares `--pool-size` connections across all agents (this
benchmark before issue 11: fewer connections and handshakes than a real fleet).

`--tls`: the servers get a certificate for 127.0.0.1 signed by a throwaway site CA
and every simulated agent verifies it against that CA alone, as agents pinning a
site CA do, so the handshakes and encryption of a real site are measured.

The load generator's own pauses would be charged to the server: its cyclic garbage
collector is off during the run (a full collection over 20,000 agents' objects
stalled it for seconds), and its loop lag is printed so a run can be judged.

Exit status 0 when the run had no errors and every endpoint's p99 is under the
budget (`--p99-budget`, default 250 ms), else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import re
import resource
import ssl
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from aami.units import parse_duration
from tests.bench.procstats import postgres_cpu_seconds, sample
from tests.bench.server_load_report import Measured, percentile, print_report, report
from tests.bench.server_site import raise_open_files_limit, start_servers
from tests.conftest import fresh_database
from tests.pki import make_pki
from tests.server.test_agent_fixtures import create_policy, publish_script


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    steady: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    registered: int = 0
    shed: int = 0  # registrations answered 503 + Retry-After (retried, not errors)
    steady_from: float = 0.0  # monotonic time after the registration ramp

    def record(self, endpoint: str, seconds: float, status: int) -> None:
        self.latencies[endpoint].append(seconds)
        if time.monotonic() - seconds >= self.steady_from:
            self.steady[endpoint].append(seconds)
        self.statuses[f"{endpoint} {status}"] += 1

    def error(self, endpoint: str, message: str) -> None:
        self.errors[endpoint] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{endpoint}: {message}")


@dataclass(frozen=True)
class Plan:
    agents: int
    duration: float
    ramp: float
    poll: float
    heartbeat: float
    report: float


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SimAgent:
    def __init__(self, index: int, base: str, session: aiohttp.ClientSession, stats: Stats,
                 bootstrap: str) -> None:
        self.hostname = f"sim-{index:05d}"
        self.base = base + "/api/v1/agent"
        self.session = session
        self.stats = stats
        self.bootstrap = bootstrap
        self.token = ""
        self.etag: str | None = None
        self.assignments: list[dict[str, Any]] = []
        self.fetched: set[str] = set()
        self.started = time.monotonic()

    async def call(self, endpoint: str, method: str, path: str, *, token: str,
                   body: Any = None, headers: dict[str, str] | None = None,
                   ok: tuple[int, ...] = (200,)) -> tuple[int, bytes, Any]:
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        start = time.perf_counter()
        try:
            async with self.session.request(method, self.base + path, json=body,
                                            headers=all_headers) as response:
                data = await response.read()
                etag = response.headers.get("ETag")
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.stats.error(endpoint, f"{type(exc).__name__}: {exc}")
            return 0, b"", None
        self.stats.record(endpoint, time.perf_counter() - start, response.status)
        if response.status not in ok:
            self.stats.error(endpoint, f"HTTP {response.status}: {data[:200]!r}")
        return response.status, data, etag

    async def register(self) -> bool:
        for _ in range(20):
            status, data, _ = await self.call(
                "register", "POST", "/register", token=self.bootstrap, ok=(201, 503),
                body={"hostname": self.hostname, "agent_version": "bench",
                      "system_info": {"cpus": 8, "sim": True}})
            if status != 503:
                break
            # Shed by the server: back off as told, as a real agent does.
            self.stats.shed += 1
            await asyncio.sleep(float(json.loads(data)["details"]["retry_after_seconds"]))
        if status != 201:
            if status == 503:
                self.stats.error("register", "still shed after 20 attempts")
            return False
        self.token = json.loads(data)["agent_token"]
        self.stats.registered += 1
        return True

    async def poll(self) -> None:
        headers = {"If-None-Match": self.etag} if self.etag else None
        status, data, etag = await self.call("assignments", "GET", "/assignments",
                                             token=self.token, headers=headers, ok=(200, 304))
        if status == 200:
            self.etag = etag
            self.assignments = json.loads(data)["assignments"]
            for item in self.assignments:
                sha = item["script"]["sha256"]
                if sha not in self.fetched:
                    code, _, _ = await self.call("script", "GET", f"/scripts/{sha}",
                                                 token=self.token)
                    if code == 200:
                        self.fetched.add(sha)

    async def heartbeat(self) -> None:
        await self.call("heartbeat", "POST", "/heartbeat", token=self.token, body={
            "agent_version": "bench", "uptime_seconds": int(time.monotonic() - self.started),
            "scripts_total": 0, "scripts_success": 0, "scripts_failed": 0,
            "system_info": {"load": 0.5}})

    async def report(self) -> None:
        items = [{
            "id": str(uuid.uuid4()), "policy_id": a["policy_id"],
            "script_name": a["script"]["name"], "script_version": a["script"]["version"],
            "script_hash": a["script"]["sha256"], "started_at": _now(), "finished_at": _now(),
            "duration_ms": 40, "exit_code": 0, "success": True,
            "stdout": "disk / 41%\nmetric ok\n", "stderr": "", "error_message": None,
        } for a in self.assignments[:2]]
        if items:
            await self.call("executions", "POST", "/executions", token=self.token,
                            body={"executions": items})

    async def live(self, plan: Plan, stop_at: float) -> None:
        await asyncio.sleep(random.uniform(0, plan.ramp))
        if not await self.register():
            return
        await self.poll()
        loops = [self._every(plan.poll, self.poll, stop_at),
                 self._every(plan.heartbeat, self.heartbeat, stop_at, first=True),
                 self._every(plan.report, self.report, stop_at)]
        await asyncio.gather(*loops)

    async def _every(self, period: float, action: Any, stop_at: float, *,
                     first: bool = False) -> None:
        await asyncio.sleep(random.uniform(0, period) if first else period)
        while time.monotonic() < stop_at:
            await action()
            await asyncio.sleep(period * random.uniform(0.95, 1.05))


class Connections:
    """How the simulated agents reach the servers (`--connections`), and how many
    TCP (and TLS) connections they opened."""

    def __init__(self, mode: str, ports: list[int], tls: ssl.SSLContext | None,
                 pool_size: int) -> None:
        self.mode, self.ports, self.tls = mode, ports, tls
        self.opened = 0
        self.trace = aiohttp.TraceConfig()
        self.trace.on_connection_create_end.append(self._count)
        self.timeout = aiohttp.ClientTimeout(total=30)
        self.sessions: list[aiohttp.ClientSession] = []
        if mode != "per-agent":
            # One session per port; `per-request` closes every connection after use.
            per_port = max(1, pool_size // len(ports)) if mode == "pooled" else 0
            self.shared = [self._session(per_port, force_close=mode == "per-request")
                           for _ in ports]

    async def _count(self, *_: Any) -> None:
        self.opened += 1

    def _session(self, limit: int, *, force_close: bool = False) -> aiohttp.ClientSession:
        # The client's default keep-alive (15 s) is shorter than an agent's 30 s
        # periods: it would reconnect before nearly every call. The server keeps an
        # idle connection for an hour (aiohttp's default), and so does this side.
        connector = aiohttp.TCPConnector(
            limit=limit, ssl=self.tls if self.tls is not None else True,
            force_close=force_close, keepalive_timeout=None if force_close else 3600)
        session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                        trace_configs=[self.trace])
        self.sessions.append(session)
        return session

    def base(self, index: int) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.ports[index % len(self.ports)]}"

    def session_for(self, index: int) -> aiohttp.ClientSession:
        """Per agent: a session whose pool is one connection, so the agent's poll,
        heartbeat and report take turns on it, as on the real agent's; a failed
        request closes it and the next one opens a fresh connection."""
        if self.mode == "per-agent":
            return self._session(1)
        return self.shared[index % len(self.ports)]

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()


async def run_agents(plan: Plan, connections: Connections, bootstrap: str,
                     stats: Stats) -> float:
    start = time.monotonic()
    stop_at = start + plan.duration
    stats.steady_from = start + plan.ramp + plan.poll
    agents = [SimAgent(i, connections.base(i), connections.session_for(i), stats, bootstrap)
              for i in range(plan.agents)]
    tasks = [asyncio.create_task(a.live(plan, stop_at)) for a in agents]
    # A full garbage collection over 20,000 agents' objects stalls this loop for
    # seconds, which would be charged to the server as latency. The run is short
    # and reference counting frees nearly everything, so collect only at the end.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        await asyncio.wait(tasks, timeout=plan.duration + 5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await connections.close()
        gc.enable()
        gc.unfreeze()
    return time.monotonic() - start


def _metrics_text(base: str, tls: ssl.SSLContext | None) -> str:
    import urllib.request

    with urllib.request.urlopen(base + "/metrics", timeout=5, context=tls) as reply:
        return str(reply.read().decode())


def server_loop_lag(text: str) -> dict[str, float]:
    """Mean event-loop lag and the share of samples later than 50 ms, from /metrics."""
    values = dict(re.findall(r'^aami_server_event_loop_lag_seconds_(sum|count) ([0-9.e+-]+)$',
                             text, re.M))
    late = re.search(r'^aami_server_event_loop_lag_seconds_bucket\{le="0.05"\} ([0-9.e+-]+)$',
                     text, re.M)
    count = float(values.get("count", 0))
    if not count or late is None:
        return {"mean_ms": 0.0, "over_50ms_percent": 0.0}
    return {"mean_ms": round(1000 * float(values["sum"]) / count, 1),
            "over_50ms_percent": round(100 * (1 - float(late.group(1)) / count), 1)}


def server_route_means(text: str) -> dict[str, tuple[float, float]]:
    """Per-route (count, mean seconds) from one server's /metrics."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    pattern = re.compile(r'aami_server_http_request_duration_seconds_(sum|count)'
                         r'\{method="(\w+)",route="([^"]+)"\} ([0-9.e+-]+)')
    for kind, method, route, value in pattern.findall(text):
        key = f"{method} {route}"
        (sums if kind == "sum" else counts)[key] = float(value)
    return {k: (counts[k], sums[k] / counts[k]) for k in counts if counts[k]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="server_load", description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--duration", default="120s")
    parser.add_argument("--server-processes", type=int, default=1)
    parser.add_argument("--ramp", default="60s", help="registrations spread over this")
    parser.add_argument("--poll", default="30s")
    parser.add_argument("--heartbeat", default="30s")
    parser.add_argument("--report", default="60s")
    parser.add_argument("--tls", action="store_true",
                        help="servers on HTTPS with a site CA's certificate; agents pin the CA")
    parser.add_argument("--connections", choices=("per-agent", "per-request", "pooled"),
                        default="per-agent",
                        help="per-agent: one kept-alive connection each, as real agents "
                             "(default); per-request: a new one for every request; pooled: "
                             "--pool-size connections shared by all agents")
    parser.add_argument("--pool-size", type=int, default=5000,
                        help="connections in all with --connections pooled")
    parser.add_argument("--db-threads", type=int, default=8)
    parser.add_argument("--shared-port", action="store_true",
                        help="one port, `serve --processes K` (SO_REUSEPORT), instead of "
                             "K processes on K ports")
    parser.add_argument("--p99-budget", default="250ms")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.server_processes < 1 or args.pool_size < 1:
        parser.error("--agents, --server-processes and --pool-size must be at least 1")
    return args


def _budget_seconds(text: str) -> float:
    return float(text[:-2]) / 1000 if text.endswith("ms") else parse_duration(text)


async def _sample_loop_lag(lags: list[float], period: float = 0.1) -> None:
    """How late this process's event loop wakes up: when it lags, the client-side
    latencies include the load generator's own queueing, not only the server's."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - due))


async def _sample_peaks(pids: list[int], peaks: list[int]) -> None:
    while True:
        for i, pid in enumerate(pids):
            peaks[i] = max(peaks[i], sample(pid).rss_bytes)
        await asyncio.sleep(2)


def _cpu(pids: list[int]) -> float:
    return sum(sample(pid).cpu_seconds for pid in pids)


async def _cpu_after(delay: float, pids: list[int]) -> float:
    """The servers' CPU seconds once the ramp (and first poll period) is over."""
    await asyncio.sleep(delay)
    return _cpu(pids)


async def measure(plan: Plan, args: argparse.Namespace, pids: list[int], ports: list[int],
                  bootstrap: str, tls: ssl.SSLContext | None) -> dict[str, Any]:
    stats = Stats()
    peaks = [0] * len(pids)
    before = [sample(pid) for pid in pids]
    pg_before = postgres_cpu_seconds()
    gen_before = resource.getrusage(resource.RUSAGE_SELF)
    lags: list[float] = []
    samplers = [asyncio.create_task(_sample_peaks(pids, peaks)),
                asyncio.create_task(_sample_loop_lag(lags))]
    steady_window = plan.ramp + plan.poll < plan.duration
    steady_start = asyncio.create_task(_cpu_after(plan.ramp + plan.poll, pids))
    connections = Connections(args.connections, ports, tls, args.pool_size)
    wall = await run_agents(plan, connections, bootstrap, stats)
    for task in samplers:
        task.cancel()
    after = [sample(pid) for pid in pids]
    if not steady_start.done():
        steady_start.cancel()
    gen_after = resource.getrusage(resource.RUSAGE_SELF)
    gen_cpu = (gen_after.ru_utime + gen_after.ru_stime) - (gen_before.ru_utime
                                                           + gen_before.ru_stime)
    scheme = "https" if tls is not None else "http"
    texts = {port: _metrics_text(f"{scheme}://127.0.0.1:{port}", tls) for port in ports}
    means: dict[str, tuple[float, float]] = {}
    for text in texts.values():
        for route, (count, mean) in server_route_means(text).items():
            old_count, old_mean = means.get(route, (0.0, 0.0))
            means[route] = (old_count + count,
                            (old_mean * old_count + mean * count) / (old_count + count))
    measured = Measured(
        wall, before, after, peaks, postgres_cpu_seconds() - pg_before, gen_cpu, means,
        connections_opened=connections.opened,
        setup={"agents": plan.agents, "server_processes": args.server_processes,
               "shared_port": args.shared_port, "tls": tls is not None,
               "connections": args.connections, "pool_size": args.pool_size,
               "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]})
    if steady_window and steady_start.done() and not steady_start.cancelled():
        measured.steady_cpu = sum(a.cpu_seconds for a in after) - steady_start.result()
        measured.steady_requests = sum(len(v) for v in stats.steady.values())
    result = report(stats, measured)
    # With --shared-port, /metrics reports the sum over the processes behind the port.
    result["loop_lag_by_port"] = {str(port): server_loop_lag(text)
                                  for port, text in texts.items()}
    result["load_generator_loop_lag_ms"] = {
        "p50": round(percentile(lags, 0.5) * 1000, 1),
        "p99": round(percentile(lags, 0.99) * 1000, 1),
        "max": round(max(lags, default=0.0) * 1000, 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(args.agents, parse_duration(args.duration), parse_duration(args.ramp),
                parse_duration(args.poll), parse_duration(args.heartbeat),
                parse_duration(args.report))
    held = args.pool_size if args.connections == "pooled" else args.agents
    limit = raise_open_files_limit(held + 256)  # + servers' database connections, logs
    with tempfile.TemporaryDirectory(prefix="aami-bench-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        url = stack.enter_context(fresh_database("postgresql", directory))
        # The agents trust the site CA and nothing else (agent/client.py does the same).
        pki = make_pki(directory) if args.tls else None
        tls = ssl.create_default_context(cafile=str(pki[0])) if pki else None
        servers, pids = start_servers(args, stack, url, directory, pki, tls)
        for name in ("disk-usage", "gpu-health"):
            publish_script(url, name, "1.0.0", f"#!/bin/sh\necho {name}\n".encode())
            create_policy(url, name, name, interval_seconds=60)
        bootstrap = servers[0].bootstrap_token("--max-uses", str(args.agents), "--expires", "1d")
        layout = " sharing one port" if args.shared_port else ""
        print(f"{args.agents} agents against {args.server_processes} server process(es)"
              f"{layout} on PostgreSQL for {args.duration} (ramp {args.ramp}), "
              f"{'TLS' if args.tls else 'no TLS'}, connections {args.connections}, "
              f"open files limit {limit}...", flush=True)
        result = asyncio.run(measure(plan, args, pids, [s.port for s in servers], bootstrap,
                                     tls))
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    budget = _budget_seconds(args.p99_budget)
    over = [n for n, e in result["endpoints"].items() if e["p99_ms"] / 1000 > budget]
    if result["errors"] or over:
        print(f"FAIL: errors={result['errors']}, p99 over {args.p99_budget}: {over}")
        return 1
    print(f"PASS: zero errors, every p99 under {args.p99_budget}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
