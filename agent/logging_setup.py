"""Logging with secrets masked.

Tokens (bootstrap and agent) and the operator's `logging.mask_patterns` are replaced
by `***` in every log line, whatever logger or exception produced it, and in script
output before it is spooled and reported (a script echoing a password must not plant
it in the server's database). Masking is applied to the final formatted line, so a
secret inside an exception message or a traceback is caught too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

MASK = "***"


class Masker:
    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self._patterns = [re.compile(p) for p in patterns]
        self._secrets: set[str] = set()

    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= 6:  # masking "a" everywhere would garble every line
            self._secrets.add(secret)

    def mask(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        for pattern in self._patterns:
            text = pattern.sub(MASK, text)
        return text


class MaskingFormatter(logging.Formatter):
    def __init__(self, masker: Masker, *, json_lines: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.masker = masker
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        if not self.json_lines:
            return self.masker.mask(super().format(record))
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.masker.mask(json.dumps(entry))


def setup_logging(level: str, fmt: str, masker: Masker, *, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(masker, json_lines=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper()))
