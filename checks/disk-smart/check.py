"""Disk health from smartmontools: `smartctl --scan -j`, then `smartctl -j -a` per disk.

Covers SATA/SAS disks and NVMe drives through smartctl's JSON output. smartctl's exit
status is a bit mask; bits 0-1 mean the disk could not be read at all, the higher bits
are findings (bit 3: the disk reports it is failing) and are exported as they are.
Opening block devices needs root. Prints Prometheus text; exits 0 whenever it could
look, 1 only for unusable parameters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

ATA_ATTRIBUTES = {
    5: ("aami_smart_reallocated_sectors", "Reallocated sectors (ATA attribute 5)."),
    197: ("aami_smart_pending_sectors", "Sectors waiting to be remapped (ATA attribute 197)."),
    198: ("aami_smart_offline_uncorrectable_sectors",
          "Sectors the offline scan could not read (ATA attribute 198)."),
}


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


def smartctl(args: list[str], timeout: float) -> tuple[int, dict]:
    try:
        done = subprocess.run(["smartctl", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, {}
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = {}
    return done.returncode, data if isinstance(data, dict) else {}


def devices(params: dict, timeout: float) -> list[tuple[str, str]]:
    if params.get("devices"):
        return [(name, "auto") for name in params["devices"]]
    _, scan = smartctl(["--scan", "-j"], timeout)
    return [(d["name"], d.get("type", "auto")) for d in scan.get("devices", [])
            if isinstance(d, dict) and isinstance(d.get("name"), str)]


def emit_device(name: str, data: dict, status: int, m: Metrics) -> None:
    disk = {"device": name}
    readable = status >= 0 and not status & 0b11 and bool(data)
    m.add("aami_smart_device_readable", "gauge",
          "1 if smartctl could open and read the disk (exit bits 0-1 clear).",
          1 if readable else 0, **disk)
    if status >= 0:
        m.add("aami_smart_exit_status", "gauge",
              "smartctl's exit bit mask: 8 failing, 16 prefail attribute at threshold, "
              "32 attribute was at threshold, 64 errors logged, 128 self-test errors.",
              status, **disk)
    if not readable:
        return
    m.add("aami_smart_info", "gauge", "Always 1; labels give model, firmware and protocol.",
          1, **disk, model=str(data.get("model_name") or data.get("scsi_model_name") or ""),
          firmware=str(data.get("firmware_version") or data.get("scsi_revision") or ""),
          protocol=str(data.get("device", {}).get("protocol", "")))
    passed = data.get("smart_status", {}).get("passed")
    if isinstance(passed, bool):
        m.add("aami_smart_health_passed", "gauge",
              "1 if the drive's overall SMART health self-assessment passed.",
              1 if passed else 0, **disk)
    temperature = data.get("temperature", {}).get("current")
    if isinstance(temperature, int | float):
        m.add("aami_smart_temperature_celsius", "gauge", "Drive temperature.", temperature,
              **disk)
    hours = data.get("power_on_time", {}).get("hours")
    if isinstance(hours, int | float):
        m.add("aami_smart_power_on_seconds", "gauge", "Power-on time over the drive's life.",
              hours * 3600, **disk)
    for attribute in data.get("ata_smart_attributes", {}).get("table", []):
        known = ATA_ATTRIBUTES.get(attribute.get("id"))
        raw = attribute.get("raw", {}).get("value")
        if known and isinstance(raw, int):
            m.add(known[0], "gauge", known[1], raw, **disk)
    emit_nvme(data.get("nvme_smart_health_information_log"), disk, m)


def emit_nvme(log: object, disk: dict, m: Metrics) -> None:
    if not isinstance(log, dict):
        return
    fields = [
        ("critical_warning", "aami_smart_nvme_critical_warning",
         "NVMe critical warning bits (0 = none; 16 = volatile memory backup failed)."),
        ("media_errors", "aami_smart_nvme_media_errors",
         "NVMe unrecovered data integrity errors (lifetime)."),
        ("available_spare", "aami_smart_nvme_available_spare_percent", "NVMe spare left."),
        ("available_spare_threshold", "aami_smart_nvme_available_spare_threshold_percent",
         "Spare level below which the drive warns."),
        ("percentage_used", "aami_smart_nvme_percentage_used_percent",
         "Vendor estimate of endurance used (can exceed 100)."),
    ]
    for key, name, text in fields:
        if isinstance(log.get(key), int):
            m.add(name, "gauge", text, log[key], **disk)


def collect(params: dict, m: Metrics) -> None:
    timeout = float(params.get("command_timeout_seconds", 30))
    available = shutil.which("smartctl") is not None
    m.add("aami_smart_tool_available", "gauge", "1 if smartctl is on PATH, else 0.",
          1 if available else 0)
    if not available:
        return
    found = devices(params, timeout)
    m.add("aami_smart_devices", "gauge", "Disks examined (from --scan or the devices list).",
          len(found))
    for name, kind in found:
        args = ["-j", "-a", name] if kind == "auto" else ["-j", "-a", "-d", kind, name]
        status, data = smartctl(args, timeout)
        emit_device(name, data, status, m)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
