"""docs/signing-scripts.md runs: its files are written and its offline blocks executed.

A block preceded by `<!-- file: NAME -->` is written to NAME; one preceded by
`<!-- run: offline -->` runs under `bash -euo pipefail` with `aami` on PATH, in order,
in one directory. (`<!-- run: server -->` blocks are run by test_server_flow.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from aami import trust
from aami.policyfile import parse_policy_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "signing-scripts.md"
_BLOCK = re.compile(r"<!-- (file|run): ([\w.-]+) -->\n```\w*\n(.*?)```", re.S)


def blocks(kind: str, label: str | None = None) -> list[tuple[str, str]]:
    return [
        (name, body)
        for k, name, body in _BLOCK.findall(DOC.read_text())
        if k == kind and (label is None or name == label)
    ]


def write_files(directory: Path) -> None:
    for name, body in blocks("file"):
        (directory / name).write_text(body)


def run_block(body: str, directory: Path, env: dict[str, str] | None = None) -> None:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body], cwd=directory, capture_output=True,
        text=True, timeout=120, env={**os.environ, "PATH": path, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, (
        f"block failed:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_doc_has_the_expected_blocks() -> None:
    assert {n for n, _ in blocks("file")} == {
        "disk-usage.sh",
        "disk-usage.schema.yaml",
        "policies.yaml",
        "verify_dsse.py",
    }
    assert len(blocks("run", "offline")) == 4
    assert len(blocks("run", "server")) == 3


def test_doc_schema_and_policy_file_are_valid() -> None:
    (schema,) = [yaml.safe_load(b) for n, b in blocks("file") if n.endswith("schema.yaml")]
    trust.check_schema(schema)
    assert trust.schema_defaults(schema) == {"threshold_percent": 80, "mounts": ["/"]}
    (policies,) = [yaml.safe_load(b) for n, b in blocks("file") if n == "policies.yaml"]
    (policy,) = parse_policy_file(policies)
    trust.validate_params(schema, {**trust.schema_defaults(schema), **policy["params"]})


def test_offline_blocks_run(tmp_path: Path) -> None:
    write_files(tmp_path)
    for _, body in blocks("run", "offline"):
        run_block(body, tmp_path)
    assert (tmp_path / "disk-usage.sh.signed.json").exists()


SECURITY_DOC = DOC.with_name("security.md")


def test_commands_in_the_security_doc_exist() -> None:
    """Every `aami ...` command quoted in docs/security.md parses with the real parser."""
    import shlex

    from aami.cli.main import build_parser

    quoted = re.findall(r"`(aami [^`]+)`", SECURITY_DOC.read_text())
    commands = [c for c in quoted if len(c.split()) > 3]  # not mere mentions like `aami x y`
    assert len(commands) >= 6
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            raise AssertionError(f"docs/security.md: {command!r} does not parse") from exc
