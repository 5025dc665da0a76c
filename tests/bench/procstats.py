"""CPU time and RSS of processes, read from /proc (Linux), for the benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    pid: int
    cpu_seconds: float
    rss_bytes: int


def sample(pid: int) -> ProcSample:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return ProcSample(pid, 0.0, 0)
    fields = stat.rsplit(")", 1)[1].split()
    # fields[11], [12] are utime and stime (fields 14 and 15 of proc(5)).
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return ProcSample(pid, cpu, int(statm[1]) * PAGE)


def _reaped_children_cpu(pid: int) -> float:
    """CPU time of `pid`'s children that have exited and been waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[13], [14] are cutime and cstime (fields 16 and 17 of proc(5)).
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU time of every process named postgres (server and backends), including
    backends that have exited since (the postmaster reaps them): without them a
    closed connection's CPU would vanish and the difference could go negative."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += sample(int(entry.name)).cpu_seconds + _reaped_children_cpu(int(entry.name))
    return total
