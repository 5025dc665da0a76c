"""What the soak judges, and the table it prints.

From the server's database: heartbeat compliance and poll success outside the fault
windows (`fleet_health_minute`, minutes that overlap a fault or its recovery grace
left out), the executions stored. From the run log every script wrote: what really ran
(lost: ran but not stored; duplicated: one execution id run twice). From the agents:
loop restarts (their /metrics), RSS and CPU (/proc).

Targets (the seed's, tightened): heartbeat compliance >= 99.5 %, poll success >= 99.9 %
outside fault windows, 0 lost, 0 duplicated, 0 loop restarts, every agent heard from
again within 2 intervals after each fault, agent RSS <= 40 MB, CPU <= 0.5 %.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from tests.soak.fleet import Agent, Site, pg_connect

RESTARTS = re.compile(r'^aami_agent_loop_restarts_total\{loop="([^"]+)"\} (\S+)$', re.M)


@dataclass
class Fault:
    name: str
    started: float
    ended: float
    recovered_seconds: float | None = None


@dataclass
class Check:
    value: float | None
    target: str
    ok: bool


@dataclass
class Report:
    agents: int
    minutes: float
    interval_seconds: float
    faults: list[dict[str, Any]]
    heartbeat_gaps: int
    heartbeat_compliance: float | None
    polls: int
    poll_success: float | None
    runs_logged: int
    runs_stored: int
    lost: int
    duplicated: int
    stored_without_log: int
    loop_restarts: dict[str, int]
    agent_rss_max_mb: float
    agent_rss_median_mb: float
    agent_cpu_mean_percent: float
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def missed(self, *, ignore: tuple[str, ...] = ()) -> list[str]:
        return [name for name, check in self.checks.items()
                if not check.ok and name not in ignore]


def naive_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def heard_from_all(site: Site, since: float, count: int) -> bool:
    """Every agent has sent a heartbeat the server flushed after `since`."""
    with closing(pg_connect(site.database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM agent_status WHERE last_heartbeat >= %s",
                    [naive_utc(since)])
        return int(cur.fetchone()[0]) >= count


def measure_recovery(site: Site, fault: Fault, count: int, limit: float) -> None:
    """Seconds from the end of a fault until every agent was heard from again."""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if heard_from_all(site, fault.ended, count):
                fault.recovered_seconds = round(time.time() - fault.ended, 1)
                return
        except Exception:  # the database may be restarting: try again
            pass
        time.sleep(1)


def _outside(minute: datetime, windows: list[tuple[datetime, datetime]]) -> bool:
    end = minute + timedelta(minutes=1)
    return all(end <= start or minute >= stop for start, stop in windows)


def judge(site: Site, agents: list[Agent], run_log: Path, faults: list[Fault],
          metrics: dict[str, str], rss: dict[str, list[int]],
          cpu: dict[tuple[str, int], list[float]], *, started: float, finished: float,
          interval: float) -> Report:
    # A fault's window runs until every agent was heard from again, plus one interval
    # for the heartbeat that carries the polls that failed during it.
    windows = [(naive_utc(f.started - 5),
                naive_utc(f.ended + (f.recovered_seconds or 10 * interval) + interval + 5))
               for f in faults]
    with closing(pg_connect(site.database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT minute, heartbeat_gaps, heartbeat_gaps_ok, polls, polls_failed "
                    "FROM fleet_health_minute WHERE minute <= %s", [naive_utc(finished)])
        rows = [r for r in cur.fetchall() if _outside(r[0], windows)]
        cur.execute("SELECT id, error_message FROM script_executions")
        stored = dict(cur.fetchall())
    gaps, ok = sum(r[1] for r in rows), sum(r[2] for r in rows)
    polls, failed = sum(r[3] for r in rows), sum(r[4] for r in rows)
    logged = Counter(line.strip() for line in run_log.read_text().splitlines() if line.strip())
    lost = sorted(set(logged) - set(stored))
    extra = [i for i, message in stored.items()
             if i not in logged and "interrupt" not in (message or "")]
    restarts: Counter[str] = Counter()
    for text in metrics.values():
        for loop, value in RESTARTS.findall(text):
            restarts[loop] += int(float(value))
    rates = [(last - first) / max(1e-9, wall_end - wall) for first, wall, last, wall_end
             in cpu.values() if wall_end > wall]
    compliance = None if not gaps else round(ok / gaps, 6)
    poll_success = None if not polls else round((polls - failed) / polls, 6)
    report = Report(
        agents=len(agents), minutes=round((finished - started) / 60, 1),
        interval_seconds=interval,
        faults=[{"name": f.name, "at_seconds": round(f.started - started),
                 "lasted_seconds": round(f.ended - f.started, 1),
                 "recovered_seconds": f.recovered_seconds} for f in faults],
        heartbeat_gaps=gaps, heartbeat_compliance=compliance, polls=polls,
        poll_success=poll_success, runs_logged=sum(logged.values()), runs_stored=len(stored),
        lost=len(lost), duplicated=sum(n - 1 for n in logged.values() if n > 1),
        stored_without_log=len(extra), loop_restarts=dict(restarts),
        agent_rss_max_mb=round(max((max(v) for v in rss.values()), default=0) / 2**20, 1),
        agent_rss_median_mb=round(median([x for v in rss.values() for x in v] or [0])
                                  / 2**20, 1),
        agent_cpu_mean_percent=round(100 * sum(rates) / max(1, len(rates)), 3))
    recovered = [f.recovered_seconds for f in faults]
    worst = None if None in recovered else max((r for r in recovered if r is not None),
                                               default=0.0)
    report.checks = {
        "heartbeat compliance": Check(compliance, ">= 99.5 %",
                                      compliance is not None and compliance >= 0.995),
        "poll success": Check(poll_success, ">= 99.9 %",
                              poll_success is not None and poll_success >= 0.999),
        "lost executions": Check(report.lost, "0", report.lost == 0),
        "duplicated executions": Check(report.duplicated, "0", report.duplicated == 0),
        "stored without a run": Check(report.stored_without_log, "0",
                                      report.stored_without_log == 0),
        "loop restarts": Check(sum(restarts.values()), "0", sum(restarts.values()) == 0),
        "back online after faults (s)": Check(worst, f"<= {2 * interval + 2:.0f}",
                                              worst is not None and worst <= 2 * interval + 2),
        "agent RSS median (MB)": Check(report.agent_rss_median_mb, "<= 40",
                                       0 < report.agent_rss_median_mb <= 40),
        "agent RSS max (MB)": Check(report.agent_rss_max_mb, "<= 40",
                                    0 < report.agent_rss_max_mb <= 40),
        "agent CPU mean (%)": Check(report.agent_cpu_mean_percent, "<= 0.5",
                                    report.agent_cpu_mean_percent <= 0.5),
    }
    return report


def print_table(report: Report) -> None:
    print(f"\nsoak: {report.agents} agents, {report.minutes} min, interval "
          f"{report.interval_seconds:g}s; {report.runs_logged} runs logged, "
          f"{report.runs_stored} stored; {report.heartbeat_gaps} heartbeat gaps and "
          f"{report.polls} polls judged outside fault windows")
    print(f"{'fault':<14}{'at (s)':>8}{'lasted (s)':>12}{'back online (s)':>17}")
    for fault in report.faults:
        back = fault["recovered_seconds"]
        print(f"{fault['name']:<14}{fault['at_seconds']:>8}{fault['lasted_seconds']:>12}"
              f"{'never' if back is None else back:>17}")
    print(f"{'check':<30}{'value':>12}  {'target':<12}result")
    for name, check in report.checks.items():
        value = "-" if check.value is None else (
            f"{100 * check.value:.3f} %" if isinstance(check.value, float)
            and name in ("heartbeat compliance", "poll success") else f"{check.value:g}")
        print(f"{name:<30}{value:>12}  {check.target:<12}{'ok' if check.ok else 'MISSED'}")
    print("PASSED" if report.passed else "FAILED: a target was missed")
