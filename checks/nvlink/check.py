"""NVLink state, speed and error counters from `nvidia-smi nvlink -s` and `nvlink -e`.

Prints Prometheus text; exits 0 whenever it could look (a missing tool, a driver that
does not answer, a link down are findings) and 1 only for unusable parameters.
Self-contained: a signed script is one file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

GPU = re.compile(r"^GPU (\d+): (.*?) \(UUID: ([^)]*)\)")
STATUS = re.compile(r"^\s*Link (\d+): (.+?)\s*$")
SPEED = re.compile(r"^([\d.]+) GB/s$")
ERROR = re.compile(r"^\s*Link (\d+): ([A-Za-z][A-Za-z0-9 ()/-]*?): (\d+)\s*$")


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


def smi(args: list[str], timeout: float) -> tuple[int, str]:
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"nvidia-smi did not answer within {timeout:g}s"
    return done.returncode, done.stdout + done.stderr


def per_gpu(text: str) -> list[tuple[str, str, list[str]]]:
    """[(index, uuid, lines under that GPU's header)]."""
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        header = GPU.match(line)
        if header:
            blocks.append((header[1], header[3], []))
        elif blocks:
            blocks[-1][2].append(line)
    return blocks


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def emit_status(text: str, params: dict, m: Metrics) -> None:
    expected = params.get("expected_links_per_gpu")
    for index, uuid, lines in per_gpu(text):
        gpu = {"gpu": index, "uuid": uuid}
        active = 0
        for line in lines:
            link = STATUS.match(line)
            if not link:
                continue
            speed = SPEED.match(link[2])
            up = 1 if speed and float(speed[1]) > 0 else 0
            active += up
            m.add("aami_nvlink_link_active", "gauge",
                  "1 if the NVLink link is up, 0 if inactive.", up, **gpu, link=link[1])
            if speed:
                m.add("aami_nvlink_link_speed_bytes_per_second", "gauge",
                      "Per-direction speed the link runs at.", float(speed[1]) * 1e9,
                      **gpu, link=link[1])
        m.add("aami_nvlink_links_active", "gauge", "Active NVLink links on the GPU.",
              active, **gpu)
        if expected is not None:
            m.add("aami_nvlink_links_expected", "gauge",
                  "Links each GPU should have up (policy expected_links_per_gpu).",
                  expected, **gpu)


def emit_errors(text: str, m: Metrics) -> None:
    for index, uuid, lines in per_gpu(text):
        for line in lines:
            error = ERROR.match(line)
            if error:
                m.add("aami_nvlink_errors_total", "counter",
                      "NVLink error counter since driver load or counter reset, by kind.",
                      int(error[3]), gpu=index, uuid=uuid, link=error[1],
                      counter=slug(error[2]))


def collect(params: dict, m: Metrics) -> None:
    timeout = float(params.get("command_timeout_seconds", 20))
    available = shutil.which("nvidia-smi") is not None
    m.add("aami_nvlink_tool_available", "gauge", "1 if nvidia-smi is on PATH, else 0.",
          1 if available else 0)
    if not available:
        return
    code, status = smi(["nvlink", "-s"], timeout)
    m.add("aami_nvlink_driver_responding", "gauge",
          "1 if nvidia-smi nvlink answered, 0 if it failed (driver not loaded, GPU lost).",
          1 if code == 0 else 0)
    if code != 0:
        print(f"nvidia-smi nvlink -s failed: {status.strip()[:300]}", file=sys.stderr)
        return
    emit_status(status, params, m)
    code, errors = smi(["nvlink", "-e"], timeout)
    if code == 0:
        emit_errors(errors, m)
    else:
        print(f"nvidia-smi nvlink -e failed: {errors.strip()[:300]}", file=sys.stderr)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
