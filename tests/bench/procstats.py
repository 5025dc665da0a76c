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


def postgres_cpu_seconds() -> float:
    """CPU time of every process named postgres (server and backends, alive now)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += sample(int(entry.name)).cpu_seconds
    return total
