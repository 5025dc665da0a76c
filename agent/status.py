"""`aami-agent status`: one report built the same way from a live daemon or from disk."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from aami.agent import __version__
from aami.agent.runbook import RunBook
from aami.agent.state import AgentState


def _ts(value: float | None) -> str | None:
    if not value:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def build_status(
    state: AgentState,
    book: RunBook,
    *,
    daemon: str,
    server: str,
    hostname: str,
    spool_pending: Mapping[str, int],
    spool_dropped: int,
    running: Collection[int] = (),
    refused: Mapping[str, int] | None = None,
    loops: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything an operator asks first; never the token itself."""
    assignments = []
    for raw in state.assignments:
        script = raw.get("script") or {}
        schedule = raw.get("schedule") or {}
        pid = raw.get("policy_id")
        assignments.append({
            "policy_id": pid,
            "policy_name": raw.get("policy_name"),
            "script": script.get("name"),
            "version": script.get("version"),
            "mode": schedule.get("mode"),
            "interval_seconds": schedule.get("interval_seconds"),
            "last_run": _ts(book.last_runs.get(str(pid))),
            "running": pid in running,
        })
    return {
        "version": __version__,
        "daemon": daemon,
        "server": server,
        "hostname": hostname,
        "registered": state.registered,
        "target_id": state.target_id,
        "groups": list(state.groups),
        "last_successful_poll": _ts(book.last_successful_poll),
        "assignments": assignments,
        "scripts_total": book.scripts_total,
        "scripts_success": book.scripts_success,
        "scripts_failed": book.scripts_failed,
        "spool_pending": dict(spool_pending),
        "spool_dropped": spool_dropped,
        "refused": dict(refused or {}),
        # Per long-lived loop: last successful cycle and restarts ({} with no daemon).
        "loops": {name: dict(info) for name, info in (loops or {}).items()},
    }


def format_status(status: Mapping[str, Any]) -> str:
    lines = [
        f"aami-agent {status['version']}: daemon {status['daemon']}",
        f"server:      {status['server'] or '(not configured)'}",
        f"hostname:    {status['hostname']}",
        "registered:  " + (f"yes, target {status['target_id']}" if status["registered"] else "no"),
        "groups:      " + (", ".join(status.get("groups") or []) or "(none)"),
        f"last poll:   {status['last_successful_poll'] or 'never'}",
        f"scripts:     {status['scripts_total']} run, {status['scripts_success']} ok, "
        f"{status['scripts_failed']} failed",
        "spool:       " + ", ".join(f"{k} {v}" for k, v in status["spool_pending"].items())
        + f" pending, {status['spool_dropped']} dropped",
    ]
    if status.get("refused"):
        lines.append("refused:     " + ", ".join(f"{k} {v}" for k, v in status["refused"].items()))
    loops = status.get("loops") or {}
    if loops:
        lines.append("loops:       " + ", ".join(
            f"{name} ok {info['last_success'] or 'never'}"
            + (f" ({info['restarts']} restarts)" if info["restarts"] else "")
            for name, info in loops.items()))
    lines.append(f"assignments: {len(status['assignments'])}")
    for a in status["assignments"]:
        when = (f"every {a['interval_seconds']}s" if a["mode"] == "interval" else a["mode"])
        flag = " (running)" if a["running"] else ""
        lines.append(f"  [{a['policy_id']}] {a['policy_name']}: {a['script']} {a['version']}, "
                     f"{when}, last run {a['last_run'] or 'never'}{flag}")
    return "\n".join(lines)
