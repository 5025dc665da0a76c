"""InfiniBand / RoCE ports: state, physical state, rate and error counters.

Reads the kernel's view in sysfs (`<sysfs_root>/class/infiniband/<device>/ports/<n>/`:
state, phys_state, rate, link_layer, counters/*), which needs no tool and no root.
Where that tree is absent but `ibstat` exists (e.g. an unusual container), the port
state and rate come from `ibstat` instead, without counters. Prints Prometheus text;
exits 0 whenever it could look, 1 only for unusable parameters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

# The IB port error counters (PortCounters); traffic counters are left out on purpose.
ERROR_COUNTERS = (
    "symbol_error", "link_error_recovery", "link_downed", "port_rcv_errors",
    "port_rcv_remote_physical_errors", "port_rcv_switch_relay_errors",
    "port_xmit_discards", "port_xmit_constraint_errors", "port_rcv_constraint_errors",
    "local_link_integrity_errors", "excessive_buffer_overrun_errors", "VL15_dropped",
)
RATE = re.compile(r"^([\d.]+) Gb/sec")


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


def read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def sysfs_ports(base: str, devices: list[str]) -> list[dict]:
    ports = []
    for device in sorted(os.listdir(base)):
        if devices and device not in devices:
            continue
        port_dir = os.path.join(base, device, "ports")
        for port in sorted(os.listdir(port_dir) if os.path.isdir(port_dir) else []):
            here = os.path.join(port_dir, port)
            counters = {}
            for name in ERROR_COUNTERS:
                value = read(os.path.join(here, "counters", name))
                if value is not None and value.isdigit():
                    counters[name] = int(value)
            ports.append({
                "device": device, "port": port,
                "state": (read(os.path.join(here, "state")) or "").partition(": ")[2],
                "phys_state": (read(os.path.join(here, "phys_state")) or "").partition(": ")[2],
                "rate": read(os.path.join(here, "rate")) or "",
                "link_layer": read(os.path.join(here, "link_layer")) or "",
                "fw_ver": read(os.path.join(base, device, "fw_ver")) or "",
                "counters": counters,
            })
    return ports


def ibstat_ports(text: str, devices: list[str]) -> list[dict]:
    ports: list[dict] = []
    device, fw = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("CA '"):
            device, fw = line[4:].rstrip("'"), ""
        elif line.startswith("Firmware version:"):
            fw = line.partition(":")[2].strip()
        elif re.fullmatch(r"Port \d+:", line) and (not devices or device in devices):
            ports.append({"device": device, "port": line[5:-1], "fw_ver": fw, "counters": {}})
        elif ports and ports[-1]["device"] == device and ":" in line:
            key, _, value = line.partition(":")
            field = {"State": "state", "Physical state": "phys_state", "Rate": "rate",
                     "Link layer": "link_layer"}.get(key)
            if field:
                ports[-1][field] = value.strip() + (" Gb/sec" if field == "rate" else "")
    return ports


def emit(ports: list[dict], params: dict, m: Metrics) -> None:
    expected_rate = params.get("expected_rate_gbps")
    active_total = 0
    for p in ports:
        port = {"device": p["device"], "port": p["port"]}
        active = 1 if p.get("state", "").upper() == "ACTIVE" else 0
        active_total += active
        m.add("aami_ib_port_info", "gauge",
              "Always 1; labels give the link layer (InfiniBand or Ethernet = RoCE), states "
              "and firmware.", 1, **port, link_layer=p.get("link_layer", ""),
              state=p.get("state", ""), phys_state=p.get("phys_state", ""),
              fw_ver=p.get("fw_ver", ""))
        m.add("aami_ib_port_active", "gauge", "1 if the port state is ACTIVE.", active, **port)
        m.add("aami_ib_port_physical_link_up", "gauge", "1 if the physical state is LinkUp.",
              1 if p.get("phys_state", "").lower() == "linkup" else 0, **port)
        rate = RATE.match(p.get("rate", ""))
        if rate:
            m.add("aami_ib_port_rate_bits_per_second", "gauge", "Negotiated port rate.",
                  float(rate[1]) * 1e9, **port)
        if expected_rate is not None:
            m.add("aami_ib_port_rate_expected_bits_per_second", "gauge",
                  "Rate every port should run at (policy expected_rate_gbps).",
                  expected_rate * 1e9, **port)
        for name, value in p["counters"].items():
            m.add("aami_ib_port_errors_total", "counter",
                  "IB port error counter since the HCA reset (some saturate at 255 or 65535).",
                  value, **port, counter=name)
    m.add("aami_ib_ports_active", "gauge", "Ports in state ACTIVE.", active_total)
    if params.get("expected_ports") is not None:
        m.add("aami_ib_ports_expected", "gauge",
              "Ports the node should have active (policy expected_ports).",
              params["expected_ports"])


def collect(params: dict, m: Metrics) -> None:
    base = os.path.join(params.get("sysfs_root", "/sys"), "class", "infiniband")
    devices = params.get("devices", [])
    has_sysfs = os.path.isdir(base)
    has_ibstat = shutil.which("ibstat") is not None
    for source, present in (("sysfs", has_sysfs), ("ibstat", has_ibstat)):
        m.add("aami_ib_source_available", "gauge",
              "1 if this source of port data exists (sysfs: the RDMA drivers are loaded).",
              1 if present else 0, source=source)
    if has_sysfs:
        emit(sysfs_ports(base, devices), params, m)
    elif has_ibstat:
        try:
            done = subprocess.run(["ibstat"], capture_output=True, text=True, check=False,
                                  timeout=float(params.get("command_timeout_seconds", 20)))
        except subprocess.TimeoutExpired:
            print("ibstat did not answer in time", file=sys.stderr)
            return
        if done.returncode == 0:
            emit(ibstat_ports(done.stdout, devices), params, m)
        else:
            print(f"ibstat failed: {done.stderr.strip()[:300]}", file=sys.stderr)
            emit([], params, m)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
