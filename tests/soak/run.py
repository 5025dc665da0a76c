"""`make soak`: the fleet run for real, with faults, judged against the seed's targets.

    python -m tests.soak [--agents 50] [--minutes 15] [--interval 15s] [--short]
                         [--report soak-report.json]

The plan spaces the faults over the run, after a warm-up and before a quiet end:

    agent-kill      one agent SIGKILLed mid-run, restarted 5 s later
    server-kill     the server's supervisor SIGKILLed, restarted at once
    hostile         the proxy answers garbage, nested JSON, 500s, hangs for 60 s
    postgres        the PostgreSQL cluster restarted
    server-down     the server stopped for 90 s

`--short` (about 10 agents, 4 minutes: one server kill and one hostile window) is what
`make test` runs. What is judged, from the server's database and the agents' own
metrics, is in tests/soak/report.py.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from aami.units import parse_duration
from tests.bench.procstats import sample
from tests.harness import BIN
from tests.soak.fleet import Agent, Site, make_agents, publish_soak_script, restart_postgres
from tests.soak.report import Fault, Report, judge, measure_recovery, print_table


@dataclass(frozen=True)
class SoakConfig:
    agents: int = 50
    minutes: float = 15
    interval: str = "15s"
    faults: tuple[str, ...] = ("agent-kill", "server-kill", "hostile", "postgres",
                               "server-down")
    work: Path = Path("build/soak")
    report: Path = Path("soak-report.json")


SHORT = SoakConfig(agents=10, minutes=4.5, interval="10s", faults=("server-kill", "hostile"))


@dataclass
class Run:
    config: SoakConfig
    site: Site
    agents: list[Agent]
    bootstrap: str
    faults: list[Fault] = field(default_factory=list)
    rss: dict[str, list[int]] = field(default_factory=dict)  # every sample per agent
    # per agent process: [first cpu s, first wall s, latest cpu s, latest wall s]
    cpu: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    started: float = 0.0

    def sample_agents(self) -> None:
        for agent in self.agents:
            pid = agent.pid
            if pid is None:
                continue
            now, wall = sample(pid), time.time()
            if now.rss_bytes:
                self.rss.setdefault(agent.hostname, []).append(now.rss_bytes)
            reading = self.cpu.setdefault((agent.hostname, pid),
                                          [now.cpu_seconds, wall, now.cpu_seconds, wall])
            reading[2:] = [now.cpu_seconds, wall]

    def fault(self, name: str, action: Callable[[], None], end: Callable[[], None] | None,
              hold: float) -> None:
        started = time.time()
        print(f"[{started - self.started:6.0f}s] fault {name}", flush=True)
        action()
        self.wait(hold)
        if end is not None:
            end()
        fault = Fault(name, started, time.time())
        self.faults.append(fault)
        measure_recovery(self.site, fault, len(self.agents),
                         limit=10 * parse_duration(self.config.interval))
        print(f"[{time.time() - self.started:6.0f}s] every agent heard from again after "
              f"{fault.recovered_seconds} s", flush=True)

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sample_agents()
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def _fault_actions(run: Run) -> dict[str, tuple[Callable[[], None], Callable[[], None] | None,
                                                 float]]:
    site, victim = run.site, run.agents[0]

    def restart_victim() -> None:
        victim.start(run.bootstrap)

    return {
        "agent-kill": (lambda: victim.kill(signal.SIGKILL), restart_victim, 5),
        "server-kill": (lambda: site.stop_server(signal.SIGKILL), site.start_server, 0),
        "hostile": (lambda: site.hostile(True), lambda: site.hostile(False), 60),
        "postgres": (restart_postgres, None, 0),
        "server-down": (site.stop_server, site.start_server, 90),
    }


def run_soak(config: SoakConfig) -> Report:
    work = config.work.resolve()
    site = Site(work, config.interval)
    run_log = work / "runs.log"
    agents: list[Agent] = []
    try:
        site.setup()
        run_log.write_text("")
        site.start_server()
        site.start_proxy()
        publish_soak_script(site, config.interval, run_log)
        agents = make_agents(site, config.agents, work / "trusted-keys", run_log)
        run = Run(config, site, agents, site.bootstrap_token(config.agents + 5))
        run.started = time.time()
        for agent in agents:
            agent.start(run.bootstrap)
        total = config.minutes * 60
        interval = parse_duration(config.interval)
        warmup = max(4 * interval, 45.0)
        quiet = max(6 * interval, 90.0)  # a clean tail of whole minutes to judge
        actions = _fault_actions(run)
        span = max(0.0, total - warmup - quiet)
        slot = span / max(1, len(config.faults))
        run.wait(warmup)
        for index, name in enumerate(config.faults):
            action, end, hold = actions[name]
            run.fault(name, action, end, hold)
            next_at = run.started + warmup + (index + 1) * slot
            run.wait(max(interval * 2, next_at - time.time()))
        run.wait(max(0.0, run.started + total - time.time()))
        run.sample_agents()
        finished = time.time()
        restarts = {a.hostname: a.metrics() for a in agents}
        for agent in agents:  # a clean stop reports what is left in the spool
            agent.kill(signal.SIGTERM)
        drain(agents)
        return judge(site, agents, run_log, run.faults, restarts, run.rss, run.cpu,
                     started=run.started, finished=finished, interval=interval)
    finally:
        for agent in agents:
            agent.kill()
        site.teardown()


def drain(agents: list[Agent]) -> None:
    """One `--once` cycle per agent after the stop, as a restarted node would do: runs
    cut short by the stop are reported as interrupted, nothing stays in a spool."""
    cycles = [subprocess.Popen([str(BIN / "aami-agent"), "run", "--config", str(a.config),
                                "--once"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for a in agents]
    for cycle in cycles:
        try:
            cycle.wait(timeout=120)
        except subprocess.TimeoutExpired:
            cycle.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak",
                                     description="The fleet soak (see tests/soak/run.py).")
    parser.add_argument("--agents", type=int)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--interval")
    parser.add_argument("--short", action="store_true",
                        help="10 agents, 4 minutes, a server kill and a hostile window")
    parser.add_argument("--faults", help="comma-separated, in order (default: all five; "
                        f"{', '.join(SoakConfig.faults)})")
    parser.add_argument("--report", type=Path, default=SoakConfig.report)
    parser.add_argument("--work", type=Path, default=SoakConfig.work)
    args = parser.parse_args(argv)
    given = {k: v for k, v in {"agents": args.agents, "minutes": args.minutes,
                               "interval": args.interval}.items() if v is not None}
    if args.faults is not None:
        faults = tuple(f for f in args.faults.split(",") if f)
        unknown = sorted(set(faults) - set(SoakConfig.faults))
        if unknown:
            parser.error(f"--faults: unknown fault {unknown[0]!r}")
        given["faults"] = faults
    config = replace(SHORT if args.short else SoakConfig(), **given, work=args.work,
                     report=args.report)
    report = run_soak(config)
    print_table(report)
    args.report.write_text(json.dumps(asdict(report), indent=2, sort_keys=True) + "\n")
    print(f"report written to {args.report}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
