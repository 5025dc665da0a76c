"""Clock synchronisation: chrony (`chronyc tracking`) or systemd-timesyncd
(`timedatectl timesync-status` and `timedatectl show`).

chrony is asked first; where it is not installed, timesyncd is. The offset is the
daemon's own estimate of how far the system clock is from its reference (chrony's
"System time": positive when fast; timesyncd's "Offset" as printed). Prints Prometheus
text; exits 0 whenever it could look, 1 only for unusable parameters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
DURATION = re.compile(r"([+-]?[\d.]+)\s*(ns|us|µs|ms|min|s|h)\b")


# ----------------------------------------------------------------- shared helpers


def load_params() -> dict:
    """AAMI_PARAMS, else JSON on stdin (the agent sends both), else no parameters."""
    raw = os.environ.get("AAMI_PARAMS")
    if raw is None and not sys.stdin.isatty():
        raw = sys.stdin.read()
    try:
        params = json.loads(raw) if raw and raw.strip() else {}
    except ValueError as exc:
        sys.exit(f"parameters: not valid JSON ({exc})")
    if not isinstance(params, dict):
        sys.exit("parameters: must be a JSON object")
    return params


class Metrics:
    """Families in first-use order, each with HELP and TYPE; no duplicate series."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, dict]] = {}

    def add(self, name: str, kind: str, text: str, value: float, /, **labels: str) -> None:
        family = self.families.setdefault(name, (kind, text, {}))
        family[2][tuple(sorted(labels.items()))] = value

    def render(self) -> str:
        lines = []
        for name, (kind, text, series) in self.families.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in series.items():
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{inner}}} {_number(value)}" if inner
                             else f"{name} {_number(value)}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ----------------------------------------------------------------------- the check


def run(command: list[str], timeout: float) -> tuple[int, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        return -1, f"{command[0]} did not answer within {timeout:g}s"
    return done.returncode, done.stdout + done.stderr


def fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def seconds(text: str) -> float | None:
    """timesyncd durations: "-5.086ms", "+7.493693s", "1min 2.5s"."""
    parts = DURATION.findall(text)
    if not parts:
        return None
    sign = -1.0 if text.strip().startswith("-") else 1.0
    return sign * sum(abs(float(n)) * UNITS[u] for n, u in parts)


def chrony(timeout: float) -> dict | None:
    code, text = run(["chronyc", "tracking"], timeout)
    if code != 0:
        print(f"chronyc tracking: {text.strip()[:200]}", file=sys.stderr)
        return None
    f = fields(text)
    system = re.match(r"([\d.]+) seconds (fast|slow)", f.get("System time", ""))
    offset = None
    if system:
        offset = float(system[1]) * (1 if system[2] == "fast" else -1)
    stratum = f.get("Stratum", "")
    return {"synchronized": f.get("Leap status", "") not in ("", "Not synchronised"),
            "offset": offset, "stratum": int(stratum) if stratum.isdigit() else None}


def timesyncd(timeout: float) -> dict | None:
    code, shown = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"], timeout)
    if code != 0:
        print(f"timedatectl show: {shown.strip()[:200]}", file=sys.stderr)
        return None
    status_code, status = run(["timedatectl", "timesync-status"], timeout)
    f = fields(status) if status_code == 0 else {}
    stratum = f.get("Stratum", "")
    return {"synchronized": shown.strip() == "yes",
            "offset": seconds(f["Offset"]) if "Offset" in f else None,
            "stratum": int(stratum) if stratum.isdigit() else None}


def collect(params: dict, m: Metrics) -> None:
    timeout = float(params.get("command_timeout_seconds", 10))
    tools = {"chronyc": shutil.which("chronyc"), "timedatectl": shutil.which("timedatectl")}
    for tool, path in tools.items():
        m.add("aami_timesync_tool_available", "gauge",
              "1 if this time sync client tool is installed.", 1 if path else 0, tool=tool)
    if tools["chronyc"]:
        daemon, state = "chrony", chrony(timeout)
    elif tools["timedatectl"]:
        daemon, state = "timesyncd", timesyncd(timeout)
    else:
        return
    m.add("aami_timesync_daemon_responding", "gauge",
          "1 if the time daemon answered (chronyd, or timedated over D-Bus).",
          0 if state is None else 1, daemon=daemon)
    if state is None:
        return
    m.add("aami_timesync_synchronized", "gauge",
          "1 if the daemon says the clock is synchronised to a reference.",
          1 if state["synchronized"] else 0, daemon=daemon)
    limit = float(params.get("max_offset_seconds", 0.1))
    m.add("aami_timesync_offset_limit_seconds", "gauge",
          "Largest tolerated offset (policy max_offset_seconds).", limit, daemon=daemon)
    if state["offset"] is not None:
        m.add("aami_timesync_offset_seconds", "gauge",
              "System clock offset from the reference, as the daemon estimates it.",
              state["offset"], daemon=daemon)
        m.add("aami_timesync_offset_over_limit", "gauge",
              "1 if the absolute offset is above max_offset_seconds.",
              1 if abs(state["offset"]) > limit else 0, daemon=daemon)
    if state["stratum"] is not None:
        m.add("aami_timesync_stratum", "gauge", "NTP stratum of this host (0 = none).",
              state["stratum"], daemon=daemon)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
