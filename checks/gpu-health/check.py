"""GPU health from `nvidia-smi --query-gpu` (query mode, CSV): one run, every GPU.

Prints Prometheus text. Exits 0 whenever it could look (a missing tool, a driver
that does not answer, a hot GPU are all findings, written as metrics); exits 1 only
when its own parameters are unusable. Self-contained on purpose: a signed script is
one file, so nothing is imported beyond the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

# Present on every driver that still supports data-centre GPUs; one call.
CORE = [
    "index", "uuid", "name", "pci.bus_id", "driver_version", "persistence_mode",
    "temperature.gpu", "power.draw", "enforced.power.limit", "ecc.mode.current",
    "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.aggregate.total", "ecc.errors.uncorrected.aggregate.total",
]
# Newer or renamed fields, each group asked for on its own so that an older driver
# refusing one ("is not a valid field to query") costs only that group.
OPTIONAL = [
    ["clocks_event_reasons.active"],
    ["clocks_throttle_reasons.active"],  # the name before driver 535
    ["remapped_rows.pending", "remapped_rows.failure", "remapped_rows.uncorrectable"],
    ["retired_pages.pending"],
    ["temperature.gpu.tlimit"],
]
THROTTLE_BITS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
ECC_FIELDS = {
    ("corrected", "volatile"): "ecc.errors.corrected.volatile.total",
    ("uncorrected", "volatile"): "ecc.errors.uncorrected.volatile.total",
    ("corrected", "aggregate"): "ecc.errors.corrected.aggregate.total",
    ("uncorrected", "aggregate"): "ecc.errors.uncorrected.aggregate.total",
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


def query(fields: list[str], timeout: float) -> tuple[list[dict] | None, str]:
    """Rows as {field: text}, or None and the tool's message when it refused."""
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {timeout:g}s"
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return None, text.splitlines()[0] if text else f"nvidia-smi exited {done.returncode}"
    rows = []
    for line in done.stdout.splitlines():
        values = [v.strip() for v in line.split(",")]
        # A lost GPU prints an error line instead of a row; it is not a GPU we can see.
        if len(values) == len(fields) and values[0].isdigit():
            rows.append(dict(zip(fields, values, strict=True)))
    return rows, ""


def number(text: str | None) -> float | None:
    """A measured number, or None for [N/A], [Not Supported] and the like."""
    if text is None:
        return None
    try:
        return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
    except ValueError:
        return None


def collect(params: dict, m: Metrics) -> None:
    timeout = float(params.get("command_timeout_seconds", 20))
    available = shutil.which("nvidia-smi") is not None
    m.add("aami_gpu_tool_available", "gauge",
          "1 if nvidia-smi is on PATH, 0 if not (no NVIDIA driver utilities).",
          1 if available else 0)
    expected = params.get("expected_count")
    if expected is not None:
        m.add("aami_gpu_expected_count", "gauge",
              "GPUs this node should have (policy parameter expected_count).", expected)
    if not available:
        return
    rows, message = query(CORE, timeout)
    m.add("aami_gpu_driver_responding", "gauge",
          "1 if nvidia-smi answered a query, 0 if it failed (driver not loaded, GPU lost).",
          0 if rows is None else 1)
    if rows is None:
        print(f"nvidia-smi failed: {message}", file=sys.stderr)
        m.add("aami_gpu_count", "gauge", "GPUs nvidia-smi reports.", 0)
        return
    by_index = {row["index"]: row for row in rows}
    for group in OPTIONAL:
        if group[0].startswith("clocks_throttle") and any(
                "clocks_event_reasons.active" in r for r in rows):
            continue
        extra, _ = query(["index", *group], timeout)
        for row in extra or []:
            by_index.get(row["index"], {}).update(row)
    m.add("aami_gpu_count", "gauge", "GPUs nvidia-smi reports.", len(rows))
    for row in rows:
        emit_gpu(row, params, m)


def emit_gpu(row: dict, params: dict, m: Metrics) -> None:
    gpu = {"gpu": row["index"], "uuid": row.get("uuid", "")}
    m.add("aami_gpu_info", "gauge", "Always 1; labels name the GPU model, PCI bus id and driver.",
          1, **gpu, name=row.get("name", ""), pci_bus_id=row.get("pci.bus_id", ""),
          driver_version=row.get("driver_version", ""))
    m.add("aami_gpu_persistence_mode_enabled", "gauge",
          "1 if persistence mode is on (recommended on compute nodes), else 0.",
          1 if row.get("persistence_mode") == "Enabled" else 0, **gpu)
    gauges = [
        ("aami_gpu_temperature_celsius", "temperature.gpu", "GPU core temperature."),
        ("aami_gpu_temperature_headroom_celsius", "temperature.gpu.tlimit",
         "Degrees left before the GPU starts slowing down (T.Limit)."),
        ("aami_gpu_power_draw_watts", "power.draw", "Power drawn by the GPU."),
        ("aami_gpu_power_limit_watts", "enforced.power.limit", "Enforced power limit."),
    ]
    for name, field, text in gauges:
        value = number(row.get(field))
        if value is not None:
            m.add(name, "gauge", text, value, **gpu)
    ecc_on = row.get("ecc.mode.current") == "Enabled"
    m.add("aami_gpu_ecc_enabled", "gauge", "1 if ECC is enabled on the GPU memory.",
          1 if ecc_on else 0, **gpu)
    for (kind, scope), field in ECC_FIELDS.items():
        value = number(row.get(field))
        if value is not None:
            m.add("aami_gpu_ecc_errors", "gauge",
                  "ECC errors; scope volatile = since driver load, aggregate = lifetime.",
                  value, **gpu, type=kind, scope=scope)
    emit_memory_repair(row, gpu, m)
    emit_throttle(row, gpu, m)
    limit = params.get("max_temperature_celsius")
    temperature = number(row.get("temperature.gpu"))
    if limit is not None and temperature is not None:
        m.add("aami_gpu_temperature_over_limit", "gauge",
              "1 if the temperature is above the policy's max_temperature_celsius.",
              1 if temperature > limit else 0, **gpu)


def emit_memory_repair(row: dict, gpu: dict, m: Metrics) -> None:
    pending = row.get("remapped_rows.pending")
    if pending in ("Yes", "No"):
        m.add("aami_gpu_remapped_rows_pending", "gauge",
              "1 if a row remapping waits for a GPU reset to take effect.",
              1 if pending == "Yes" else 0, **gpu)
    failure = row.get("remapped_rows.failure")
    if failure in ("Yes", "No"):
        m.add("aami_gpu_remapped_rows_failed", "gauge",
              "1 if a row remapping failed (the GPU should be replaced).",
              1 if failure == "Yes" else 0, **gpu)
    uncorrectable = number(row.get("remapped_rows.uncorrectable"))
    if uncorrectable is not None:
        m.add("aami_gpu_remapped_rows_uncorrectable", "gauge",
              "Rows remapped because of uncorrectable errors (lifetime).", uncorrectable, **gpu)
    retired = row.get("retired_pages.pending")
    if retired in ("Yes", "No"):
        m.add("aami_gpu_retired_pages_pending", "gauge",
              "1 if a retired memory page waits for a reboot (pre-Ampere GPUs).",
              1 if retired == "Yes" else 0, **gpu)


def emit_throttle(row: dict, gpu: dict, m: Metrics) -> None:
    mask = number(row.get("clocks_event_reasons.active") or row.get(
        "clocks_throttle_reasons.active"))
    if mask is None:
        return
    for bit, reason in THROTTLE_BITS.items():
        m.add("aami_gpu_clock_throttle_active", "gauge",
              "1 if this clock throttle (event) reason is active now.",
              1 if int(mask) & bit else 0, **gpu, reason=reason)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
