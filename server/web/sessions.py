"""Web UI sessions, the HTTP side: cookie names and the CSRF comparisons. What a
session is and how it is stored (hashed id, lifetime, idle timeout, revocation) lives in
server/services/ui_sessions.py.
"""

from __future__ import annotations

import hmac
import secrets

COOKIE = "aami_session"
LOGIN_CSRF_COOKIE = "aami_login_csrf"


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)
