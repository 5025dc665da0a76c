"""Kernel and driver versions, and whether they are the ones the policy expects.

The kernel release comes from `<proc_root>/sys/kernel/osrelease`; a kernel module's
version (nvidia, mlx5_core from MLNX_OFED, lustre, ...) from
`<sysfs_root>/module/<name>/version`, present only while that module is loaded.
Expected versions are shell-style patterns (`5.15.0-1*`, `550.54.*`). No tool is
needed and nothing needs root. Exits 0 whenever it could look; 1 when the kernel
release itself cannot be read or the parameters are unusable.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys

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
            return handle.read().strip() or None
    except OSError:
        return None


def collect(params: dict, m: Metrics) -> None:
    proc_root, sysfs_root = params.get("proc_root", "/proc"), params.get("sysfs_root", "/sys")
    kernel_file = os.path.join(proc_root, "sys", "kernel", "osrelease")
    versions = {"kernel": read(kernel_file)}
    if versions["kernel"] is None:
        sys.exit(f"cannot read the kernel release from {kernel_file}")
    expected = {e["component"]: e["version"] for e in params.get("expected", [])}
    modules = list(params.get("modules", ["nvidia", "mlx5_core"]))
    for name in modules + [c for c in expected if c != "kernel" and c not in modules]:
        versions[name] = read(os.path.join(sysfs_root, "module", name, "version"))
    for component, version in versions.items():
        labels = {"component": component}
        m.add("aami_version_present", "gauge",
              "1 if the component's version could be read (a module: it is loaded).",
              1 if version else 0, **labels)
        if version:
            m.add("aami_version_info", "gauge", "Always 1; the version label is what runs.",
                  1, **labels, version=version)
    mismatches = 0
    for component, pattern in sorted(expected.items()):
        actual = versions.get(component)
        matches = actual is not None and fnmatch.fnmatchcase(actual, pattern)
        mismatches += 0 if matches else 1
        m.add("aami_version_matches_expected", "gauge",
              "1 if the running version matches the policy's pattern (0 when absent).",
              1 if matches else 0, component=component, expected=pattern)
    m.add("aami_version_mismatches", "gauge",
          "Expected components whose running version differs or is absent.", mismatches)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
