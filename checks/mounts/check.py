"""Required mount points: present in the mount table, of the expected type, writable.

Reads `<proc_root>/self/mounts` for presence, file system type and the `ro` option;
for each mount that must be writable it creates, fsyncs and removes a small probe
file as the run's user. A probe runs in a thread with a deadline, so a hung NFS or
Lustre mount is reported (`aami_mount_probe_timed_out 1`) instead of hanging the check;
a thread stuck in the kernel cannot be killed, so the script then leaves with
os._exit and the agent's process-group kill cleans up. Exits 0 whenever it could look;
1 only when the mount table itself cannot be read or parameters are unusable.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time

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


def mount_table(proc_root: str) -> dict[str, tuple[str, set[str]]]:
    """{mount point: (fstype, options)}; the last mount on a point wins, as the kernel shows."""
    path = os.path.join(proc_root, "self", "mounts")
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        sys.exit(f"cannot read the mount table {path}: {exc.strerror}")
    table = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 4:
            # /proc/self/mounts writes a space in a path as \040
            point = fields[1].replace("\\040", " ").replace("\\011", "\t")
            table[point] = (fields[2], set(fields[3].split(",")))
    return table


def probe(path: str, timeout: float) -> tuple[bool | None, float]:
    """(True/False, seconds) for written-or-not; (None, timeout) when it hung."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            fd, name = tempfile.mkstemp(prefix=".aami-probe-", dir=path)
            try:
                os.write(fd, b"aami mount probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(name)
            outcome.append(True)
        except OSError:
            outcome.append(False)

    start = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return None, timeout
    return outcome[0], time.monotonic() - start


def collect(params: dict, m: Metrics) -> bool:
    """Emit the metrics; True if a probe hung (the caller must not wait for it)."""
    table = mount_table(params.get("proc_root", "/proc"))
    timeout = float(params.get("probe_timeout_seconds", 10))
    hung = False
    for item in params.get("mounts", []):
        path = item["path"].rstrip("/") or "/"
        mount = {"mount": path}
        fstype, options = table.get(path, ("", set()))
        present = path in table
        m.add("aami_mount_present", "gauge", "1 if the path is a mount point now.",
              1 if present else 0, **mount)
        if present:
            m.add("aami_mount_info", "gauge", "Always 1; the fstype label is the mounted type.",
                  1, **mount, fstype=fstype)
            m.add("aami_mount_read_only", "gauge", "1 if mounted with the ro option.",
                  1 if "ro" in options else 0, **mount)
        if item.get("fstype"):
            m.add("aami_mount_fstype_matches", "gauge",
                  "1 if the mounted type is the expected one (0 also when absent).",
                  1 if present and fstype == item["fstype"] else 0, **mount)
        if item.get("writable", False) and present:
            ok, seconds = probe(path, timeout)
            hung = hung or ok is None
            m.add("aami_mount_writable", "gauge",
                  "1 if a probe file could be created, synced and removed.",
                  1 if ok else 0, **mount)
            m.add("aami_mount_probe_timed_out", "gauge",
                  "1 if the write probe did not finish within probe_timeout_seconds.",
                  1 if ok is None else 0, **mount)
            m.add("aami_mount_probe_seconds", "gauge", "Time the write probe took.",
                  round(seconds, 6), **mount)
    return hung


def main() -> int:
    params = load_params()
    m = Metrics()
    hung = collect(params, m)
    sys.stdout.write(m.render())
    if hung:
        sys.stdout.flush()
        os._exit(0)  # a thread stuck in the kernel would block a normal exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
