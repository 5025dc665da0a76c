"""NVMe controller health from `nvme smart-log <dev> -o json` (nvme-cli).

Finds the controllers in sysfs (`<sysfs_root>/class/nvme/nvmeN`, with their state) and
reads each one's SMART / health log. Both JSON shapes of nvme-cli are understood:
1.x prints `critical_warning` as a number, 2.x as an object with a `value`. The
composite temperature is in kelvin in the log and exported in celsius. The admin
command needs root. Prints Prometheus text; exits 0 whenever it could look.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

WARNING_BITS = {0: "available_spare", 1: "temperature", 2: "reliability_degraded",
                3: "read_only", 4: "volatile_memory_backup_failed", 5: "pmr_read_only"}


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


def controllers(sysfs_root: str) -> list[tuple[str, str]]:
    base = os.path.join(sysfs_root, "class", "nvme")
    found = []
    for name in sorted(os.listdir(base) if os.path.isdir(base) else []):
        if re.fullmatch(r"nvme\d+", name):
            try:
                with open(os.path.join(base, name, "state")) as handle:
                    state = handle.read().strip()
            except OSError:
                state = ""
            found.append((name, state))
    return found


def smart_log(device: str, timeout: float) -> dict | None:
    try:
        done = subprocess.run(["nvme", "smart-log", device, "-o", "json"], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(f"nvme smart-log {device}: {done.stderr.strip()[:200]}", file=sys.stderr)
        return None
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # some nvme-cli versions quote large counters
        try:
            return float(value.replace(",", ""))
        except ValueError:
            return None
    return None


def emit(name: str, log: dict, params: dict, m: Metrics) -> None:
    dev = {"device": name}
    warning = log.get("critical_warning")
    warning = warning.get("value") if isinstance(warning, dict) else warning
    bits = int(number(warning) or 0)
    m.add("aami_nvme_critical_warning", "gauge", "Critical warning bit field (0 = none).",
          bits, **dev)
    for bit, reason in WARNING_BITS.items():
        m.add("aami_nvme_critical_warning_active", "gauge",
              "1 if this critical warning bit is set.", 1 if bits >> bit & 1 else 0, **dev,
              warning=reason)
    kelvin = number(log.get("temperature"))
    if kelvin is not None:
        m.add("aami_nvme_temperature_celsius", "gauge", "Composite temperature.",
              round(kelvin - 273.15, 2), **dev)
    gauges = [
        ("avail_spare", "aami_nvme_available_spare_percent", "Spare capacity left."),
        ("spare_thresh", "aami_nvme_available_spare_threshold_percent",
         "Spare level below which the controller warns."),
        ("percent_used", "aami_nvme_percentage_used_percent",
         "Vendor estimate of endurance used (can exceed 100)."),
    ]
    for key, metric, text in gauges:
        value = number(log.get(key))
        if value is not None:
            m.add(metric, "gauge", text, value, **dev)
    counters = [
        ("media_errors", "aami_nvme_media_errors_total", "Unrecovered data integrity errors."),
        ("num_err_log_entries", "aami_nvme_error_log_entries_total", "Error log entries."),
        ("unsafe_shutdowns", "aami_nvme_unsafe_shutdowns_total", "Shutdowns without notice."),
    ]
    for key, metric, text in counters:
        value = number(log.get(key))
        if value is not None:
            m.add(metric, "counter", text, value, **dev)
    hours = number(log.get("power_on_hours"))
    if hours is not None:
        m.add("aami_nvme_power_on_seconds_total", "counter", "Power-on time.", hours * 3600,
              **dev)
    limit = params.get("max_percentage_used")
    used = number(log.get("percent_used"))
    if limit is not None and used is not None:
        m.add("aami_nvme_wear_over_limit", "gauge",
              "1 if percentage used is above the policy's max_percentage_used.",
              1 if used > limit else 0, **dev)


def collect(params: dict, m: Metrics) -> None:
    available = shutil.which("nvme") is not None
    m.add("aami_nvme_tool_available", "gauge", "1 if nvme-cli is on PATH, else 0.",
          1 if available else 0)
    found = controllers(params.get("sysfs_root", "/sys"))
    m.add("aami_nvme_controllers", "gauge", "NVMe controllers in sysfs.", len(found))
    timeout = float(params.get("command_timeout_seconds", 20))
    for name, state in found:
        m.add("aami_nvme_controller_live", "gauge",
              "1 if the controller's sysfs state is live (not resetting, dead, deleting).",
              1 if state == "live" else 0, device=name)
        if not available:
            continue
        log = smart_log(f"{params.get('dev_root', '/dev')}/{name}", timeout)
        m.add("aami_nvme_smart_log_ok", "gauge", "1 if the SMART log could be read.",
              0 if log is None else 1, device=name)
        if log is not None:
            emit(name, log, params, m)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
