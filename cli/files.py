"""Local files: atomic writes and reads that fail with a message naming the file.

Every file the CLI writes goes through `write_atomic`: a temp file in the same
directory, fsync, then rename (or link, when overwriting is not allowed), then an
fsync of the directory. A crash leaves either the old file or the new one, never half
of a private key or of a signed script.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from aami.cli.errors import UsageError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write `data` to `path` atomically with permissions `mode` from the first byte.

    With overwrite=False the final step is link(2), which fails if `path` exists, so
    two concurrent `aami keys generate` runs can never replace each other's key.
    """
    directory = path.parent
    temp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: never follow or reuse a file someone planted at the temp name.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)  # the umask may have removed bits we asked for
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # raises FileExistsError instead of replacing
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: str | Path, what: str) -> bytes:
    """The file's bytes, or a UsageError naming the file and why it cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read ({exc.strerror})") from None


def read_json(path: str | Path, what: str) -> Any:
    data = read_bytes(path, what)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{what} {path}: not valid JSON ({exc})") from None


def read_json_or_yaml(path: str | Path, what: str) -> Any:
    """JSON for *.json, YAML otherwise (YAML also reads most JSON)."""
    if str(path).endswith(".json"):
        return read_json(path, what)
    data = read_bytes(path, what)
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UsageError(f"{what} {path}: not valid YAML{where} ({problem})") from None
