"""`aami-server` never creates a database nobody named, and says which one it opened
(a token made in the wrong database fails only much later, with no hint why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVER = str(Path(sys.executable).parent / "aami-server")


def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AAMI_")}
    return subprocess.run([SERVER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**base, **env})


def test_no_database_named_is_a_usage_error_and_creates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("server: {listen: 127.0.0.1:8080}\n")  # no database.url
    result = _run(tmp_path, "token", "create", "--role", "admin", "--name", "x",
                  "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith("aami-server: error: no database named")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == [config]


def test_the_database_opened_is_named_on_stderr(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'named.db'}"
    made = _run(tmp_path, "token", "create", "--role", "admin", "--name", "x",
                "--database", url)
    assert made.returncode == 0, made.stderr
    assert f"aami-server: database {url}" in made.stderr.splitlines()
    assert len(made.stdout.strip().splitlines()) == 1  # the token alone on stdout


def test_an_existing_local_database_is_used_and_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'aami.db'}"
    assert _run(tmp_path, "migrate", "--database", url).returncode == 0
    config = tmp_path / "server.yaml"
    config.write_text("compat: {legacy_checks: false}\n")
    used = _run(tmp_path, "migrate", "--config", str(config))
    assert used.returncode == 0, used.stderr
    assert "aami-server: database sqlite:///aami.db" in used.stderr.splitlines()


def test_a_password_in_the_url_is_masked(tmp_path: Path) -> None:
    result = _run(tmp_path, "migrate",
                  AAMI_DATABASE_URL="postgresql://aami:s3cret@127.0.0.1:1/nodb")
    assert result.returncode == 1
    assert "aami-server: database postgresql://aami:***@127.0.0.1:1/nodb" in result.stderr
    assert "s3cret" not in result.stderr
