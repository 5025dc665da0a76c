"""Secrets masked in whatever the CLI logs or prints about an error.

The same rules as server/logsafe.py (the import rules keep the CLI from importing the
server; tests/server/test_log_safety.py checks the two mask alike): our tokens keep
their 13-character prefix (`aami_adm_Xy3k***`), any other `Authorization` credential,
every `Cookie` value and the session and CSRF cookies become `***`; control
characters are escaped so a server's error text cannot forge lines on the terminal.
"""

from __future__ import annotations

import logging
import re
import sys

MASK = "***"

_TOKEN = re.compile(r"\b(aami_(?:adm|bst|agt)_[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+")
_MASKED_TOKEN = re.compile(r"aami_(?:adm|bst|agt)_[A-Za-z0-9_-]{0,4}\*\*\*")
_CREDENTIAL = re.compile(
    r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|basic|token|digest)\s+)?"
    r"|\b(?:bearer|basic)\s+)"
    r"([^\s'\",;]+)")
_COOKIE_HEADER = re.compile(r"(?i)(\b(?:set-)?cookie['\"]?\s*[:=]\s*['\"]?)([^\r\n'\"]+)")
_COOKIE_VALUE = re.compile(r"\b(aami_session|aami_login_csrf)=([^\s;'\",]+)")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # newline and tab kept


def mask(text: str) -> str:
    text = _TOKEN.sub(rf"\1{MASK}", text)

    def credential(match: re.Match[str]) -> str:
        value = match.group(2)
        return match.group(1) + (value if _MASKED_TOKEN.fullmatch(value) else MASK)

    text = _CREDENTIAL.sub(credential, text)
    text = _COOKIE_HEADER.sub(rf"\1{MASK}", text)
    return _COOKIE_VALUE.sub(rf"\1={MASK}", text)


def safe(text: str) -> str:
    """Text fit for the terminal: masked, control characters (not newlines) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                        else f"\\u{ord(m.group()):04x}", mask(text))


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = safe(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


def setup_logging() -> None:
    """Warnings of the libraries the CLI uses (ssl, urllib) on stderr, masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
