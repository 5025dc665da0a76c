"""Run the real `aami` console script as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

AAMI = str(Path(sys.executable).parent / "aami")
SCRIPT = b"#!/bin/bash\nset -eu\ndf -h / | tail -n 1\n"
SCHEMA_YAML = """\
type: object
properties:
  threshold_percent: {type: integer, minimum: 1, maximum: 100, default: 80}
  mounts: {type: array, items: {type: string}}
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


def aami(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AAMI_")}
    done = subprocess.run(
        [AAMI, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
        env={**base, **(env or {})},
    )  # fmt: skip
    result = Result(done.returncode, done.stdout, done.stderr)
    # Never a traceback, whatever happened; errors are one line.
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    if done.returncode != 0:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return result


@dataclass
class Workspace:
    root: Path
    script: Path
    key: Path
    pub: Path
    keys_dir: Path
    signed: Path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A key pair made with `aami keys generate` and a script signed with it."""
    keys_dir = tmp_path / "keys"
    assert aami("keys", "generate", "--out", str(keys_dir), "--name", "ops").code == 0
    script = tmp_path / "disk.sh"
    script.write_bytes(SCRIPT)
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA_YAML)
    signed = aami(
        "script", "sign", str(script), "--key", str(keys_dir / "ops.key"),
        "--name", "disk-usage", "--version", "1.2.0", "--timeout", "30s",
        "--params-schema", str(schema), "--expires", "2099-01-01", "--run-as", "aami-runner",
    )  # fmt: skip
    assert signed.code == 0, signed.err
    return Workspace(
        tmp_path, script, keys_dir / "ops.key", keys_dir / "ops.pub", keys_dir,
        tmp_path / "disk.sh.signed.json",
    )  # fmt: skip
