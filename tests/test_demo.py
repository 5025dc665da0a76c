"""The README's run command (`make demo`, i.e. scripts/demo.sh) works as a new user
runs it, twice in a row on the same demo directory: server on SQLite, a publisher
key, a signed check, a policy and a real agent whose verified run reaches the API."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[1]


def _run_demo(data: Path) -> str:
    env = {**os.environ, "AAMI_DEMO_DIR": str(data), "AAMI_DEMO_PORT": str(free_port()),
           "AAMI_DEMO_METRICS_PORT": str(free_port())}
    env.pop("AAMI_TOKEN", None)
    process = subprocess.Popen(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    output = []
    deadline = time.monotonic() + 120
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return "".join(output)


@pytest.mark.slow
def test_demo_runs_a_verified_script_twice(tmp_path: Path) -> None:
    first = _run_demo(tmp_path / "demo")
    assert '"script_name": "disk-usage"' in first, first
    assert '"success": true' in first and "Press Ctrl-C" in first
    second = _run_demo(tmp_path / "demo")  # existing token, key, agent state
    assert '"script_name": "disk-usage"' in second, second
    assert "Traceback" not in first + second
