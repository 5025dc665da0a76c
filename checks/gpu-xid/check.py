"""NVIDIA Xid events in the kernel log: this boot's count and what is new since the last run.

Reads `journalctl -k -o short-iso-precise` (or, without a journal, `dmesg --time-format
iso`), picks the driver's `NVRM: Xid (PCI:<bus>): <code>, ...` lines, and remembers
the timestamp of the last line it read and the boot id in a small state file, so the
next run counts only newer events. Reading the kernel log needs root, CAP_SYSLOG or
the systemd-journal group; without that access the check cannot measure and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime

XID = re.compile(r"NVRM: Xid \(PCI:([0-9A-Fa-f:.]+)\): (\d+)")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)[.,](\d+)([+-]\d\d:?\d\d)\s")
# Xids that mean the GPU or its memory needs attention (NVIDIA's Xid catalogue).
DEFAULT_CRITICAL = [48, 63, 64, 74, 79, 92, 94, 95, 119, 120, 154]
NO_ACCESS_HINT = "You are currently not seeing messages from other users and the system"


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


def read_kernel_log(source: str, timeout: float) -> tuple[str, str]:
    """(tool used, text); exits 1 when the log exists but cannot be read."""
    commands = {
        "journal": ["journalctl", "-k", "-o", "short-iso-precise", "--no-pager"],
        "dmesg": ["dmesg", "--time-format", "iso"],
    }
    order = ["journal", "dmesg"] if source == "auto" else [source]
    for name in order:
        command = commands[name]
        if shutil.which(command[0]) is None:
            continue
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            sys.exit(f"{command[0]} did not answer within {timeout:g}s")
        if name == "journal" and "No journal files were found" in done.stdout + done.stderr:
            continue  # no journald here: the ring buffer is the log
        if done.returncode != 0 or NO_ACCESS_HINT in done.stderr:
            message = (done.stderr.strip() or f"exited {done.returncode}").splitlines()[0]
            sys.exit(f"cannot read the kernel log with {command[0]}: {message}")
        return name, done.stdout
    return "", ""


def parse_events(text: str) -> list[tuple[datetime, str, int]]:
    events = []
    for line in text.splitlines():
        stamp, xid = STAMP.match(line), XID.search(line)
        if stamp and xid:
            when = datetime.fromisoformat(
                f"{stamp[1]}.{stamp[2][:6].ljust(6, '0')}{stamp[3]}")
            events.append((when, xid[1].lower(), int(xid[2])))
    return events


def load_state(path: str) -> dict:
    try:
        with open(path) as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(path: str, state: dict) -> bool:
    """Atomically (temp, fsync, rename); False when the directory is not writable."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temp = f"{path}.tmp{os.getpid()}"
        with open(temp, "w") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        return True
    except OSError as exc:
        print(f"cannot write state {path}: {exc.strerror}", file=sys.stderr)
        return False


def boot_id(proc_root: str) -> str:
    try:
        with open(os.path.join(proc_root, "sys/kernel/random/boot_id")) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def collect(params: dict, m: Metrics) -> None:
    tool, text = read_kernel_log(params.get("source", "auto"),
                                 float(params.get("command_timeout_seconds", 30)))
    m.add("aami_gpu_xid_tool_available", "gauge",
          "1 if journalctl or dmesg could be used to read the kernel log, else 0.",
          1 if tool else 0)
    if not tool:
        return
    events = parse_events(text)
    state_file = os.path.join(params.get("state_dir", "/var/lib/aami-checks"), "gpu-xid.json")
    state, boot = load_state(state_file), boot_id(params.get("proc_root", "/proc"))
    first = not state or state.get("boot_id") != boot
    last = None if first else datetime.fromisoformat(state["last"]) if state.get("last") else None
    critical = set(params.get("critical_xids", DEFAULT_CRITICAL))
    boot_counts: dict[tuple[str, int], int] = {}
    new_counts: dict[tuple[str, int], int] = {}
    for when, bus, code in events:
        boot_counts[(bus, code)] = boot_counts.get((bus, code), 0) + 1
        if last is None or when > last:
            new_counts[(bus, code)] = new_counts.get((bus, code), 0) + 1
    m.add("aami_gpu_xid_first_run", "gauge",
          "1 when no state from an earlier run this boot existed: new = all of this boot.",
          1 if first else 0)
    for (bus, code), count in sorted(boot_counts.items()):
        labels = {"pci_bus_id": bus, "xid": str(code)}
        m.add("aami_gpu_xid_events_boot", "gauge",
              "Xid events in this boot's kernel log, by GPU and Xid code.", count, **labels)
        m.add("aami_gpu_xid_events_new", "gauge",
              "Xid events logged since the previous run, by GPU and Xid code.",
              new_counts.get((bus, code), 0), **labels)
    m.add("aami_gpu_xid_new_events", "gauge", "Xid events since the previous run, all codes.",
          sum(new_counts.values()))
    m.add("aami_gpu_xid_critical_new_events", "gauge",
          "Xid events since the previous run whose code is in critical_xids.",
          sum(n for (_, code), n in new_counts.items() if code in critical))
    if events:
        m.add("aami_gpu_xid_last_event_timestamp_seconds", "gauge",
              "Time of the latest Xid event in this boot's log.", max(e[0] for e in events)
              .timestamp())
    newest = max([e[0] for e in events] + ([last] if last else []), default=None)
    saved = save_state(state_file, {"boot_id": boot,
                                    "last": newest.isoformat() if newest else None})
    m.add("aami_gpu_xid_state_saved", "gauge",
          "1 if the state file was written (else every run reports all events as new).",
          1 if saved else 0)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
