"""Bearer-token authentication: header in, `Principal` (or None) out.

Every agent request carries a token, so resolved agent and admin tokens are cached
for `CACHE_SECONDS`, longer than any poll interval: an unchanged poll then costs no
query at all. Revocation still takes effect within about a second everywhere:
every revocation bumps the credentials revision (`server.services.revision`), the
watcher in `server.caches` reads it once a second, and a new value empties this
cache (`observe_credentials`). A process also forgets a token it revoked itself at
once (`forget`). Bootstrap tokens are cached too: the cache only names the token,
and registration counts the use with one conditional UPDATE that re-checks the
count, revocation and expiry (`services.registration.take_use`), so a cached
bootstrap token that has since been used up or revoked still gets a 401.

A bad token is logged (prefix and source address only) and counted, and repeated
failures from one address are slowed down (server/auth_failures.py): while an address
waits, a token this process already knows as valid is still served from the cache (a
fleet behind one NAT keeps working past one broken node), anything else gets 429
without a lookup. Any success from an address clears its failures.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from aami.server.auth_failures import AuthFailures
from aami.server.db import Database
from aami.server.errors import InvalidToken, TooManyRequests
from aami.server.logsafe import escape_controls, token_prefix
from aami.server.models import AgentToken, ApiToken, BootstrapToken, Target
from aami.server.principal import AdminPrincipal, AgentPrincipal, BootstrapPrincipal, Principal
from aami.server.timefmt import utcnow
from aami.server.tokens import Role, TokenKind, hash_token, kind_of

log = logging.getLogger(__name__)

CACHE_SECONDS = 600.0
CACHE_MAX_ENTRIES = 100_000


def _lookup_admin(token_hash: str) -> AdminPrincipal | None:
    row = ApiToken.get_or_none(ApiToken.token_hash == token_hash, ApiToken.revoked == False)  # noqa: E712
    if row is None:
        return None
    return AdminPrincipal(token_id=row.id, name=row.name, role=Role(row.role))


def _lookup_agent(token_hash: str) -> AgentPrincipal | None:
    row = (
        AgentToken.select(AgentToken, Target)
        .join(Target)
        .where(AgentToken.token_hash == token_hash, AgentToken.revoked_at.is_null())
        .first()
    )
    if row is None:
        return None
    return AgentPrincipal(token_id=row.id, target_id=row.target.id, hostname=row.target.hostname)


def _lookup_bootstrap(token_hash: str) -> BootstrapPrincipal | None:
    row = BootstrapToken.get_or_none(
        BootstrapToken.token_hash == token_hash, BootstrapToken.revoked == False  # noqa: E712
    )
    if row is None or row.uses >= row.max_uses:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return BootstrapPrincipal(token_id=row.id)


_LOOKUPS = {
    TokenKind.ADMIN: _lookup_admin,
    TokenKind.AGENT: _lookup_agent,
    TokenKind.BOOTSTRAP: _lookup_bootstrap,
}


class Authenticator:
    def __init__(self, database: Database, *, legacy_open: bool = False,
                 failures: AuthFailures | None = None) -> None:
        self._db = database
        self.legacy_open = legacy_open
        self.failures = failures or AuthFailures()
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._credentials_revision: int | None = None

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise InvalidToken("Authorization must be 'Bearer TOKEN'")
        return secret.strip()

    async def authenticate(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        now = time.monotonic()
        secret = header.partition(" ")[2].strip()
        token_hash = hash_token(secret)
        cached = self._cache.get(token_hash)
        if cached and cached[0] > now and header.partition(" ")[0].lower() == "bearer":
            self.failures.succeeded(request.remote)
            return cached[1]
        wait = self.failures.retry_after(request.remote, "bearer", now)
        if wait is not None:
            raise TooManyRequests(f"too many bad tokens from this address; retry in {wait}s",
                                  retry_after=wait)
        try:
            principal = await self._check(header, token_hash)
        except InvalidToken as exc:
            self._failed(request, secret, exc.message, now)
            raise
        self.failures.succeeded(request.remote)
        return principal

    def _failed(self, request: web.Request, secret: str, reason: str, now: float) -> None:
        wait = self.failures.failed(request.remote, "bearer", now)
        log.warning("bad token %s from %s on %s %s: %s%s", token_prefix(secret),
                    request.remote, request.method, escape_controls(request.path), reason,
                    f"; this address waits {wait:g}s" if wait else "")

    async def _check(self, header: str, token_hash: str) -> Principal:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise InvalidToken("Authorization must be 'Bearer TOKEN'")
        kind = kind_of(secret.strip())
        if kind is None:
            raise InvalidToken("the token is not valid")
        principal = await self._db.run(_LOOKUPS[kind], token_hash)
        if principal is None:
            raise InvalidToken("the token is not valid, revoked or expired")
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[token_hash] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal

    def observe_credentials(self, value: int) -> None:
        """The credentials revision as the watcher read it; a change empties the cache."""
        if self._credentials_revision is not None and value != self._credentials_revision:
            self._cache.clear()
        self._credentials_revision = value

    def forget(self, secret_hash: str) -> None:
        """Drop a cached token at once (revocation through this process)."""
        self._cache.pop(secret_hash, None)
