"""What the node is, for heartbeats and registration: OS, kernel, CPUs, memory, GPUs.

Read from /etc/os-release, /proc/meminfo and `nvidia-smi` (only when it is on PATH,
with a timeout: a wedged GPU driver must not wedge the agent). Collected at most every
`Limits.system_info_ttl` seconds.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
from typing import Any


def os_pretty_name(os_release: str = "/etc/os-release") -> str:
    try:
        with open(os_release, encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip().strip('"')
    except OSError:
        pass
    return platform.system()


def memory_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    try:
        with open(meminfo, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def parse_nvidia_smi(output: str) -> dict[str, Any]:
    """`nvidia-smi --query-gpu=name --format=csv,noheader` → count and models."""
    models = [line.strip() for line in output.splitlines() if line.strip()]
    return {"count": len(models), "models": sorted(set(models))}


async def gpu_info(timeout: float = 10.0) -> dict[str, Any]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"count": 0, "models": []}
    try:
        proc = await asyncio.create_subprocess_exec(
            smi, "--query-gpu=name", "--format=csv,noheader",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (OSError, TimeoutError):
        return {"count": 0, "models": [], "error": "nvidia-smi failed or timed out"}
    if proc.returncode != 0:
        return {"count": 0, "models": [], "error": f"nvidia-smi exited {proc.returncode}"}
    return parse_nvidia_smi(out.decode(errors="replace"))


async def collect() -> dict[str, Any]:
    return {
        "os": os_pretty_name(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "gpus": await gpu_info(),
        "python": platform.python_version(),
    }
