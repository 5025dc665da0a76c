"""Secrets never reach the logs: tokens and configured patterns are masked."""

from __future__ import annotations

import json
import logging

from aami.agent.logging_setup import Masker, MaskingFormatter


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aami.agent", logging.INFO, __file__, 1, msg, args, None)


def test_tokens_and_patterns_are_masked_in_text_and_json() -> None:
    masker = Masker([r"password=\S+"])
    masker.add_secret("agent-token-abcdef123")
    masker.add_secret("abc")  # too short to mask safely: ignored
    line = record("token %s and password=hunter2 in abc", "agent-token-abcdef123")
    text = MaskingFormatter(masker, json_lines=False).format(line)
    assert "agent-token-abcdef123" not in text and "hunter2" not in text
    assert text.endswith("token *** and *** in abc")
    entry = json.loads(MaskingFormatter(masker, json_lines=True).format(line))
    assert entry["msg"] == "token *** and *** in abc" and entry["level"] == "info"


def test_secret_inside_an_exception_is_masked() -> None:
    masker = Masker()
    masker.add_secret("bootstrap-secret-999")
    try:
        raise RuntimeError("refused bootstrap-secret-999")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "bootstrap-secret-999" not in MaskingFormatter(masker, json_lines=False).format(rec)
