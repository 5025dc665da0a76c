"""`make bench-agent`: the agent's startup time, steady RSS and CPU.

Full mode (when the server has the Agent API): a real `aami-server` on SQLite, five
interval policies every 30 s, and `aami-agent run` against it for `--seconds`
(default 70). Degraded mode (no Agent API on the server yet): `aami-agent run`
against an unreachable server, clearly labelled; it measures the daemon's own cost
but not that of polling, verifying and running scripts.

Printed per program (from source, and the PyInstaller binary `dist/aami-agent` when
it exists):
- startup: seconds from exec until the control socket answers `status` (the agent
  is then polling; registration and the first poll run concurrently);
- RSS: the whole process tree (agent plus any running scripts), median and maximum
  over the steady part (after the first 20 s), against the 40 MB budget;
- CPU: user+system time of the agent's own processes over the run (scripts excluded),
  as % of one core, against the 0.5 % budget.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
RSS_BUDGET_MB = 40.0
CPU_BUDGET_PCT = 0.5
CHECK = "#!/bin/bash\ndf -P / | tail -1 | awk '{print \"disk_used_percent \" $5+0}'\n"


@dataclass
class Figures:
    label: str
    startup_s: float
    rss_median_mb: float
    rss_max_mb: float
    cpu_pct: float
    samples: int
    executions: int | None = None


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
        todo.extend(_children(current))
    return total


def _agent_pids(pid: int) -> list[int]:
    """The agent's own processes in its tree (a PyInstaller one-file binary is a
    bootloader plus the Python child); scripts (`aami-run-*` files) are left out."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/cmdline", "rb") as handle:
                argv0 = handle.read().split(b"\0")[0]
        except OSError:
            continue
        if b"aami-agent" in argv0 or current == pid:
            out.append(current)
        todo.extend(_children(current))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(label: str, argv: list[str], state_dir: Path, seconds: float) -> Figures:
    sock = state_dir / "control.sock"
    start = time.monotonic()
    log = (state_dir.parent / f"{state_dir.name}.log").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{label}: the agent exited early ({proc.returncode})")
        if sock.exists() and _answers(sock):
            break
        time.sleep(0.01)
    startup = time.monotonic() - start
    time.sleep(1)
    pids = _agent_pids(proc.pid)
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    samples = []
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        if time.monotonic() - t0 >= min(20.0, seconds / 3):
            samples.append(tree_rss_kb(proc.pid) / 1024)
    cpu = (cpu_seconds(pids) - cpu0) / (time.monotonic() - t0) * 100
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return Figures(label, startup, statistics.median(samples), max(samples), cpu, len(samples))


def _answers(sock: Path) -> bool:
    from aami.agent.control import ControlUnavailable, send_command

    try:
        return bool(send_command(sock, "status", timeout=5).get("ok"))
    except (ControlUnavailable, OSError, ValueError):
        return False


def programs(config: Path) -> list[tuple[str, list[str]]]:
    out = [("from source", [str(Path(sys.executable).parent / "aami-agent"), "run",
                            "--config", str(config)])]
    binary = ROOT / "dist" / "aami-agent"
    if binary.exists():
        out.append(("binary dist/aami-agent", [str(binary), "run", "--config", str(config)]))
    return out


def degraded(work: Path, seconds: float) -> list[Figures]:
    from tests.harness import free_port

    results: list[Figures] = []
    for label, _ in programs(work / "x"):
        state = work / f"state-{len(results)}"
        config = work / f"agent-{len(results)}.yaml"
        config.write_text(
            f"server: {{url: 'http://127.0.0.1:{free_port()}', timeout: 5s}}\n"
            f"agent: {{hostname: bench, state_dir: {state}, bootstrap_token_file: null}}\n"
            f"trust: {{keys_dir: {work}}}\n"
            f"metrics: {{listen: '127.0.0.1:{free_port()}', textfile_dir: null}}\n"
        )
        argv = dict(programs(config))[label]
        results.append(measure(f"{label}, DEGRADED (server unreachable)", argv, state, seconds))
    return results


def full(work: Path, seconds: float) -> list[Figures] | None:
    from tests.agent.realserver import agent_api_available, site

    with site(work / "site") as s:
        if not agent_api_available(s.server):
            return None
        for i in range(5):
            s.publish(s.sign(f"bench-check-{i}", "1.0.0", CHECK))
            s.apply({"name": f"bench-{i}", "script": f"bench-check-{i}", "version": "latest",
                     "scope": "global", "schedule": {"mode": "interval", "interval": "30s"},
                     "timeout": "20s"})
        results: list[Figures] = []
        for n, (label, _) in enumerate(programs(work / "x")):
            state = work / f"state-{n}"
            config = s.agent_config(state, hostname=f"bench-{n}", poll="30s")
            argv = dict(programs(config))[label] + ["--token", s.bootstrap_token()]
            before = _stored(s)
            figures = measure(label, argv, state, seconds)
            figures.executions = _stored(s) - before
            results.append(figures)
        return results


def _stored(s: object) -> int:
    reply = s.server.api("GET", "/api/v1/executions?limit=500")  # type: ignore[attr-defined]
    return len(reply.json.get("data", [])) if reply.status == 200 else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent_footprint")
    parser.add_argument("--seconds", type=float, default=70.0)
    parser.add_argument("--degraded", action="store_true", help="skip the real-server run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aami-bench-agent-") as tmp:
        work = Path(tmp)
        results = None if args.degraded else full(work, args.seconds)
        mode = "full: real server, 5 interval policies every 30s"
        if results is None:
            why = "requested" if args.degraded else "the server has no Agent API yet"
            mode = f"DEGRADED ({why}): agent against an unreachable server"
            results = degraded(work, args.seconds)
    print(f"aami-agent footprint ({mode}, {args.seconds:g}s per program)")
    ok = True
    for f in results:
        within = f.rss_max_mb <= RSS_BUDGET_MB and f.cpu_pct <= CPU_BUDGET_PCT
        ok &= within
        runs = "" if f.executions is None else f", {f.executions} results stored by the server"
        print(f"  {f.label}: startup {f.startup_s:.2f}s, RSS median {f.rss_median_mb:.1f} MB "
              f"max {f.rss_max_mb:.1f} MB (budget {RSS_BUDGET_MB:g}), CPU {f.cpu_pct:.2f}% "
              f"of one core (budget {CPU_BUDGET_PCT:g}%), {f.samples} samples{runs}"
              f"{'' if within else '  OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
