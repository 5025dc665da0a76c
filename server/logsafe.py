"""Log lines safe to ship to a central log store.

One filter, put on every handler of the root logger (`install`), so it sees every
record whatever logger made it, aiohttp's included:

1. Secrets are masked: our tokens keep their 13-character prefix (`aami_adm_Xy3k***`,
   the prefix listings show), any other `Authorization` credential, every `Cookie`
   value and the session and CSRF cookies become `***`. Stops: an oversized
   `Authorization` or `Cookie` header copied into the log by aiohttp's parser error.
2. Control characters in the message are escaped (`\\x0a`). Stops: a request path
   such as `/downloads/x%0Aforged` writing a second, forged log line. Tracebacks keep
   their newlines; they are masked, not escaped.
3. A request aiohttp's parser refuses (bad request line, oversized headers) is one
   WARNING line naming the client and the reason, not an ERROR with a traceback: it is
   the client's mistake (or a scanner), nothing in the server went wrong.

The server's own code needs no discipline beyond logging normally; the masking is
also usable on other text (`mask`).
"""

from __future__ import annotations

import logging
import re

MASK = "***"
TOKEN_PREFIX_LENGTH = 13  # as server/tokens.py stores and lists it

# Our token kinds (server/tokens.py): the kind prefix and 4 characters are kept.
_TOKEN = re.compile(r"\b(aami_(?:adm|bst|agt)_[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+")
_MASKED_TOKEN = re.compile(r"aami_(?:adm|bst|agt)_[A-Za-z0-9_-]{0,4}\*\*\*")
_CREDENTIAL = re.compile(
    r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|basic|token|digest)\s+)?"
    r"|\b(?:bearer|basic)\s+)"
    r"([^\s'\",;]+)")
_COOKIE_HEADER = re.compile(r"(?i)(\b(?:set-)?cookie['\"]?\s*[:=]\s*['\"]?)([^\r\n'\"]+)")
_COOKIE_VALUE = re.compile(r"\b(aami_session|aami_login_csrf)=([^\s;'\",]+)")
# C0, DEL, C1 and the Unicode line and paragraph separators: anything a log viewer
# may take for a line break or a terminal may take for a command.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def mask(text: str) -> str:
    """`text` with every recognisable secret masked."""
    text = _TOKEN.sub(rf"\1{MASK}", text)

    def credential(match: re.Match[str]) -> str:
        value = match.group(2)
        kept = value if _MASKED_TOKEN.fullmatch(value) else MASK
        return match.group(1) + kept

    text = _CREDENTIAL.sub(credential, text)
    text = _COOKIE_HEADER.sub(rf"\1{MASK}", text)
    return _COOKIE_VALUE.sub(rf"\1={MASK}", text)


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                        else f"\\u{ord(m.group()):04x}", text)


def token_prefix(secret: str) -> str:
    """What of a presented (bad) token may be logged: our prefix, never more."""
    return escape_controls(mask(secret[:TOKEN_PREFIX_LENGTH] + MASK
                                if _TOKEN.match(secret) else MASK))


def _parser_error(record: logging.LogRecord) -> BaseException | None:
    """The exception when this is aiohttp reporting a request it could not parse.
    Recognised by class name: this module stays free of aiohttp (server/ base room)."""
    if not record.name.startswith("aiohttp") or not record.exc_info:
        return None
    exc = record.exc_info[1]
    names = {cls.__name__ for cls in type(exc).__mro__}
    return exc if "HttpProcessingError" in names else None


class SafeLogFilter(logging.Filter):
    """Rewrites each record in place (see the module docstring); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = _parser_error(record)
        if exc is not None:
            code = getattr(exc, "code", 400)
            reason = getattr(exc, "message", str(exc))
            record.msg = f"{record.getMessage()}: malformed request ({code}): {reason}"
            record.args = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        record.msg = escape_controls(mask(record.getMessage()))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, SafeLogFilter) for f in handler.filters):
            handler.addFilter(SafeLogFilter())
