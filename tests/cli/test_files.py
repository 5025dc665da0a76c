"""write_atomic: permissions from the first byte, no overwrite unless asked, no leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aami.cli.errors import UsageError
from aami.cli.files import read_json_or_yaml, write_atomic


def test_new_file_gets_the_mode_even_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "k", b"secret", mode=0o600, overwrite=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert (tmp_path / "k").read_bytes() == b"secret"


def test_no_overwrite_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "k"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"new", overwrite=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_overwrite_replaces(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("policies:\n  - name: [unclosed\n")
    with pytest.raises(UsageError, match=r"policy file .*p\.yaml: not valid YAML at line \d"):
        read_json_or_yaml(bad, "policy file")
