"""Web UI sessions, the storage side (cookies and forms: web/sessions.py): stored
server-side in `ui_session`, shared by every server process.

The browser holds only a random 256-bit session id (cookie `aami_session`, HttpOnly,
SameSite=Strict, Secure under TLS). The table stores the SHA-256 of that id, never
the id itself, so a read of the database cannot be replayed as a cookie. Each row
names the admin API token the user logged in with; the role is read from that token
on every request, so revoking the token (or changing its role) ends or changes every
session made with it at once, on every process.

Each session carries its CSRF synchronizer token: every POST form echoes it in a
hidden field and the middleware compares it in constant time.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from aami.server.models import ApiToken, UiSession
from aami.server.timefmt import utcnow
from aami.server.tokens import Role, TokenKind, hash_token, kind_of


@dataclass(frozen=True)
class SessionLimits:
    lifetime: timedelta = timedelta(hours=12)  # absolute: log in again after this
    idle: timedelta = timedelta(hours=2)  # no request for this long ends it
    touch_every: timedelta = timedelta(minutes=1)  # bounds writes to last_seen_at


LIMITS = SessionLimits()


@dataclass(frozen=True)
class UiUser:
    """The logged-in user, as views see it."""

    session_hash: str
    token_id: int
    name: str
    role: Role
    csrf_token: str

    def can(self, needed: Role) -> bool:
        return self.role.allows(needed)

    @property
    def can_operate(self) -> bool:
        """Force-runs, policy and group edits (the API's OPERATOR routes)."""
        return self.role.allows(Role.OPERATOR)

    @property
    def is_admin(self) -> bool:
        """Publisher keys and bootstrap tokens (the API's ADMIN routes)."""
        return self.role.allows(Role.ADMIN)


class LoginFailed(Exception):
    """The token given at login is not a valid, unrevoked admin API token."""


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def login(secret: str, now: datetime | None = None) -> tuple[str, UiUser]:
    """Trade an admin API token for a new session; returns (cookie value, user)."""
    secret = secret.strip()
    if kind_of(secret) is not TokenKind.ADMIN:
        raise LoginFailed("this is not an admin API token (they start with aami_adm_)")
    token = ApiToken.get_or_none(ApiToken.token_hash == hash_token(secret),
                                 ApiToken.revoked == False)  # noqa: E712
    if token is None:
        raise LoginFailed("the token is not valid or has been revoked")
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    row = UiSession.create(id=_session_hash(session_id), api_token=token,
                           csrf_token=secrets.token_urlsafe(32), created_at=now,
                           last_seen_at=now, expires_at=now + LIMITS.lifetime)
    token.last_used_at = now
    token.save(only=[ApiToken.last_used_at])
    UiSession.delete().where(UiSession.expires_at < now).execute()  # sweep old rows
    token_id: int = token.get_id()
    return session_id, UiUser(row.id, token_id, token.name, Role(token.role), row.csrf_token)


def resolve(session_id: str, now: datetime | None = None) -> UiUser | None:
    """The user behind a session cookie, or None if it is unknown, expired, idle too
    long, or its token was revoked."""
    if not session_id or len(session_id) > 128:
        return None
    now = now or utcnow()
    row = (UiSession.select(UiSession, ApiToken).join(ApiToken)
           .where(UiSession.id == _session_hash(session_id)).first())
    if row is None:
        return None
    if row.api_token.revoked or row.expires_at <= now or row.last_seen_at + LIMITS.idle <= now:
        row.delete_instance()
        return None
    if now - row.last_seen_at >= LIMITS.touch_every:
        UiSession.update(last_seen_at=now).where(UiSession.id == row.id).execute()
    token = row.api_token
    return UiUser(row.id, token.id, token.name, Role(token.role), row.csrf_token)


def logout(session_hash: str) -> None:
    UiSession.delete().where(UiSession.id == session_hash).execute()
