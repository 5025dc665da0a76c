"""The server load benchmark's figures: gathered into one dict (also written as JSON
with `--json`) and printed as a table."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import Any

from tests.bench.procstats import ProcSample


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Measured:
    """What `measure` collected besides the per-request statistics."""

    wall: float
    before: list[ProcSample]
    after: list[ProcSample]
    peak_rss: list[int]
    pg_cpu: float
    gen_cpu: float
    route_means: dict[str, tuple[float, float]]
    # servers' CPU seconds and requests completed after the ramp (None: no steady window)
    steady_cpu: float | None = None
    steady_requests: int = 0
    connections_opened: int = 0
    setup: dict[str, Any] = field(default_factory=dict)


def _per_request_ms(cpu_seconds: float, requests: int) -> float | None:
    return round(1000 * cpu_seconds / requests, 3) if requests else None


def report(stats: Any, m: Measured) -> dict[str, Any]:
    total = sum(len(v) for v in stats.latencies.values())
    endpoints = {}
    for name, values in sorted(stats.latencies.items()):
        endpoints[name] = {"requests": len(values), "rps": round(len(values) / m.wall, 1),
                           "p50_ms": round(percentile(values, 0.50) * 1000, 1),
                           "p99_ms": round(percentile(values, 0.99) * 1000, 1),
                           "max_ms": round(max(values) * 1000, 1),
                           "steady_p99_ms": round(percentile(stats.steady.get(name, []),
                                                             0.99) * 1000, 1),
                           "errors": stats.errors.get(name, 0)}
    servers = [{"pid": b.pid, "rss_mb": round(a.rss_bytes / 2**20, 1),
                "peak_rss_mb": round(peak / 2**20, 1),
                "cpu_percent": round(100 * (a.cpu_seconds - b.cpu_seconds) / m.wall, 1)}
               for b, a, peak in zip(m.before, m.after, m.peak_rss, strict=True)]
    server_cpu = sum(a.cpu_seconds - b.cpu_seconds for b, a in zip(m.before, m.after,
                                                                   strict=True))
    return {
        **m.setup,
        "registered": stats.registered, "duration_s": round(m.wall, 1),
        "requests": total, "requests_per_s": round(total / m.wall, 1),
        "errors": sum(stats.errors.values()),
        "registrations_shed_and_retried": stats.shed,
        "connections_opened": m.connections_opened,
        "error_samples": stats.error_samples, "endpoints": endpoints, "servers": servers,
        # All server processes together; the ramp includes every registration (and,
        # with one connection per agent, nearly every TLS handshake).
        "server_cpu_ms_per_request": _per_request_ms(server_cpu, total),
        "server_cpu_ms_per_request_after_ramp": (
            None if m.steady_cpu is None else _per_request_ms(m.steady_cpu,
                                                              m.steady_requests)),
        "postgres_cpu_percent": round(100 * m.pg_cpu / m.wall, 1),
        "load_generator_cpu_percent": round(100 * m.gen_cpu / m.wall, 1),
        # ru_maxrss is in KiB on Linux; TLS costs the generator (and the servers)
        # about 256 KiB per connection: asyncio's SSL read buffer.
        "load_generator_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "server_side_mean_ms": {k: {"count": int(c), "mean_ms": round(mean * 1000, 2)}
                                for k, (c, mean) in sorted(m.route_means.items())
                                if "/agent/" in k},
        "statuses": dict(sorted(stats.statuses.items())),
    }


def _connections_line(result: dict[str, Any]) -> str:
    mode = result["connections"]
    described = {
        "per-agent": "one kept-alive connection per agent (as real agents)",
        "per-request": "a new connection per request (the agent before issue 11)",
        "pooled": f"a pool of {result['pool_size']} shared by all agents (not as real "
                  "agents)",
    }[mode]
    tls = "TLS, every agent pinning the site CA" if result["tls"] else "plain HTTP, no TLS"
    return (f"transport: {tls}; connections: {described}; "
            f"{result['connections_opened']} opened")


def print_report(result: dict[str, Any]) -> None:
    print(f"\nagents simulated: {result['agents']} (registered {result['registered']}), "
          f"{result['duration_s']} s, {result['server_processes']} server process(es)")
    print(_connections_line(result))
    print(f"requests: {result['requests']} ({result['requests_per_s']}/s), "
          f"errors: {result['errors']}, registrations shed (503, retried after "
          f"Retry-After): {result['registrations_shed_and_retried']}")
    print(f"{'endpoint':<14}{'req':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'errors':>8}{'p99 after ramp':>16}")
    for name, e in result["endpoints"].items():
        print(f"{name:<14}{e['requests']:>9}{e['rps']:>9}{e['p50_ms']:>9}{e['p99_ms']:>9}"
              f"{e['max_ms']:>9}{e['errors']:>8}{e['steady_p99_ms']:>16}")
    for s in result["servers"]:
        print(f"server pid {s['pid']}: RSS {s['rss_mb']} MB (peak {s['peak_rss_mb']} MB), "
              f"CPU {s['cpu_percent']}% of one core")
    steady = result["server_cpu_ms_per_request_after_ramp"]
    print(f"server CPU per request (all processes): {result['server_cpu_ms_per_request']} ms"
          f" overall, {'n/a' if steady is None else steady} ms after the ramp")
    for port, lag in result["loop_lag_by_port"].items():
        print(f"server event-loop lag on port {port}: mean {lag['mean_ms']} ms "
              f"({lag['over_50ms_percent']}% of samples over 50 ms)")
    print(f"postgresql CPU {result['postgres_cpu_percent']}%, load generator CPU "
          f"{result['load_generator_cpu_percent']}% (of one core), peak RSS "
          f"{result['load_generator_peak_rss_mb']} MB")
    lag = result["load_generator_loop_lag_ms"]
    print(f"load generator event-loop lag: p50 {lag['p50']} ms, p99 {lag['p99']} ms, "
          f"max {lag['max']} ms")
    print("server-side mean latency per route:")
    for route, v in result["server_side_mean_ms"].items():
        print(f"  {route:<40} {v['count']:>8} x {v['mean_ms']} ms")
    for line in result["error_samples"]:
        print(f"  error: {line}")
