"""Parallel file systems, where their tools exist: Lustre, BeeGFS, IBM Storage Scale (GPFS).

- Lustre: `lfs check servers` pings every MDT/OST the client knows; "X active." is up,
  "X inactive." and "error: check 'X': ..." (stderr) are not.
- BeeGFS: `beegfs-check-servers` lists every management, metadata and storage server
  as reachable or not.
- GPFS: `mmhealth node show -Y` (in /usr/lpp/mmfs/bin) gives each component's state.
A file system whose tool is absent is reported as such and skipped. These tools need
root. Prints Prometheus text; exits 0 whenever it could look.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

LUSTRE_UP = re.compile(r"^(\S+) active\.$")
LUSTRE_INACTIVE = re.compile(r"^(\S+) inactive\.$")
LUSTRE_ERROR = re.compile(r"check '([^']+)'")
BEEGFS = re.compile(r"^(\S+?)\s*\[ID: (\d+)\]: (.*)$")
GPFS_OK = {"HEALTHY", "TIPS"}
COMPLETED = "1 if the file system's tool answered in time."


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


def run(command: list[str], timeout: float) -> tuple[int, str, str] | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        print(f"{command[0]} did not answer within {timeout:g}s", file=sys.stderr)
        return None
    return done.returncode, done.stdout, done.stderr


def lustre(timeout: float, m: Metrics) -> None:
    result = run(["lfs", "check", "servers"], timeout)
    targets: dict[str, int] = {}
    if result:
        _, out, err = result
        for line in (out + "\n" + err).splitlines():
            line = line.strip()
            up, inactive, error = (LUSTRE_UP.match(line), LUSTRE_INACTIVE.match(line),
                                   LUSTRE_ERROR.search(line))
            if up:
                targets[up[1]] = 1
            elif inactive:
                targets[inactive[1]] = 0
            elif error:
                targets[error[1]] = 0
    m.add("aami_pfs_check_completed", "gauge", COMPLETED, 1 if result else 0, fs="lustre")
    for target, up in sorted(targets.items()):
        fsname = target.split("-")[0]
        kind = "mdt" if "-MDT" in target else "ost" if "-OST" in target else "other"
        m.add("aami_pfs_lustre_target_up", "gauge",
              "1 if the Lustre target (MDT or OST) answered the client's ping.", up,
              fsname=fsname, target=target, kind=kind)
    m.add("aami_pfs_lustre_targets_down", "gauge", "Lustre targets that did not answer.",
          sum(1 for up in targets.values() if not up))


def beegfs(timeout: float, m: Metrics) -> None:
    result = run(["beegfs-check-servers"], timeout)
    m.add("aami_pfs_check_completed", "gauge", COMPLETED, 1 if result else 0, fs="beegfs")
    role, down = "", 0
    for line in (result[1] if result else "").splitlines():
        text = line.strip()
        if text and not text.startswith("=") and "[ID:" not in text:
            role = text.lower()
            continue
        server = BEEGFS.match(text)
        if server:
            reachable = 1 if server[3].startswith("reachable") else 0
            down += 1 - reachable
            m.add("aami_pfs_beegfs_server_reachable", "gauge",
                  "1 if this BeeGFS server is reachable from the node.", reachable,
                  role=role, node=server[1], node_id=server[2])
    m.add("aami_pfs_beegfs_servers_unreachable", "gauge", "BeeGFS servers not reachable.",
          down)


def gpfs(command: str, timeout: float, m: Metrics) -> None:
    result = run([command, "node", "show", "-Y"], timeout)
    m.add("aami_pfs_check_completed", "gauge", COMPLETED,
          1 if result and result[0] == 0 else 0, fs="gpfs")
    unhealthy = 0
    for line in (result[1] if result else "").splitlines():
        fields = line.split(":")
        # mmhealth:State:0:1:::node:component:entityname:entitytype:status:... (-Y format;
        # colons inside values are written %3A, so splitting on ":" is safe)
        if len(fields) < 11 or fields[1] != "State" or fields[2] == "HEADER":
            continue
        component, entity, entity_type, status = fields[7], fields[8], fields[9], fields[10]
        labels = {"component": component, "entity": entity, "entity_type": entity_type}
        m.add("aami_pfs_gpfs_component_info", "gauge",
              "Always 1; the status label is mmhealth's (HEALTHY, TIPS, DEGRADED, FAILED, "
              "DEPEND, DISABLED, ...).", 1, **labels, status=status)
        if status == "DISABLED":
            continue  # a component not in use here is not unhealthy
        healthy = 1 if status in GPFS_OK else 0
        unhealthy += 1 - healthy
        m.add("aami_pfs_gpfs_component_healthy", "gauge",
              "1 if mmhealth reports the component HEALTHY (or only TIPS).", healthy, **labels)
    m.add("aami_pfs_gpfs_components_unhealthy", "gauge",
          "GPFS components neither HEALTHY nor TIPS nor DISABLED.", unhealthy)


def collect(params: dict, m: Metrics) -> None:
    timeout = float(params.get("command_timeout_seconds", 30))
    wanted = params.get("filesystems", ["lustre", "beegfs", "gpfs"])
    mmhealth = shutil.which("mmhealth") or shutil.which(
        "mmhealth", path=params.get("gpfs_bin_dir", "/usr/lpp/mmfs/bin"))
    tools = {"lustre": shutil.which("lfs"), "beegfs": shutil.which("beegfs-check-servers"),
             "gpfs": mmhealth}
    for fs in wanted:
        m.add("aami_pfs_tool_available", "gauge",
              "1 if the file system's client tool is installed (lfs, beegfs-check-servers, "
              "mmhealth).", 1 if tools[fs] else 0, fs=fs)
    if "lustre" in wanted and tools["lustre"]:
        lustre(timeout, m)
    if "beegfs" in wanted and tools["beegfs"]:
        beegfs(timeout, m)
    if "gpfs" in wanted and tools["gpfs"]:
        gpfs(str(tools["gpfs"]), timeout, m)


def main() -> int:
    params = load_params()
    m = Metrics()
    collect(params, m)
    sys.stdout.write(m.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
