"""Trading the bootstrap token for an agent token, and recovering when the server forgets us.

The bootstrap token is a shared, limited-use secret; the agent token that the server
returns identifies exactly this node and is kept only in `state.json` (mode 0600).
Once registered the bootstrap token is never sent again, so a leaked bootstrap token
file on a node that already registered is worth nothing more than its remaining uses.

A 401 `INVALID_TOKEN` on an agent-token call means the server no longer knows the
token (database restored, target deleted, token rotated elsewhere). The agent then
forgets its identity but keeps its rollback and schedule memory, and re-registers
with the bootstrap token when one is configured. Without one it logs a clear error
once and keeps running its last verified assignments (degraded mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aami.agent import __version__
from aami.agent.client import AgentClient, Conflict, InvalidToken, ServerRefused
from aami.agent.state import TrustedState

T = TypeVar("T")

log = logging.getLogger("aami.agent.registration")


class NotRegistered(Exception):
    """No agent token, and registration is impossible or was refused."""


class Registrar:
    def __init__(
        self,
        client: AgentClient,
        trusted: TrustedState,
        *,
        hostname: str,
        bootstrap_token: str | None,
        system_info: Callable[[], Mapping[str, Any]],
        on_token: Callable[[str], None] = lambda token: None,
    ) -> None:
        self.client = client
        self.trusted = trusted
        self.hostname = hostname
        self.bootstrap_token = bootstrap_token
        self.system_info = system_info
        self.on_token = on_token
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Make sure the client carries a valid-looking agent token, registering if needed.

        Raises `NotRegistered` (with an operator-facing message) when that is impossible;
        transport errors (`ServerUnavailable`) propagate for the caller's back-off.
        The poll, heartbeat and report loops all call this; the lock makes the first
        caller register and the others wait and use its token (a single-use bootstrap
        token must not be spent twice).
        """
        async with self._lock:
            await self._ensure_locked()

    async def _ensure_locked(self) -> None:
        if self.trusted.agent_token:
            self.client.set_token(self.trusted.agent_token)
            self.on_token(self.trusted.agent_token)
            return
        if not self.bootstrap_token:
            raise NotRegistered(
                "not registered and no bootstrap token configured "
                "(use --token, AAMI_TOKEN or agent.bootstrap_token_file)"
            )
        try:
            reg = await self.client.register(
                self.bootstrap_token, self.hostname, __version__, dict(self.system_info())
            )
        except InvalidToken as exc:
            raise NotRegistered(
                f"the server refused the bootstrap token ({exc.message}); it may be expired, "
                "used up or mistyped"
            ) from exc
        except ServerRefused as exc:
            # 409: the hostname has an agent, or an admin created it in advance, and the
            # token may not claim it; 403: the token was made for another node
            # (bootstrap-token create --hostname). The server's message says which.
            if not (isinstance(exc, Conflict) or (exc.status == 403 and exc.documented)):
                raise
            raise NotRegistered(
                f"the server refused to register hostname {self.hostname!r} with this "
                f"bootstrap token ({exc.message})"
            ) from exc
        with self.trusted.batch():
            self.trusted.registered(target_id=reg.target_id, agent_token=reg.agent_token,
                                    hostname=self.hostname)
            self.trusted.set_intervals(reg.poll_interval_seconds, reg.heartbeat_interval_seconds)
        self.client.set_token(reg.agent_token)
        self.on_token(reg.agent_token)
        log.info("registered as target %s (hostname %s)", reg.target_id, self.hostname)

    async def call(self, op: Callable[[], Awaitable[T]], *, retry: bool = False) -> T:
        """Run one agent-token request, registering first if needed.

        The one place a lost token is handled: on 401 INVALID_TOKEN the identity is
        forgotten and, with `retry` and a bootstrap token, the agent re-registers and
        tries once more; otherwise `NotRegistered` says why."""
        await self.ensure()
        used = self.trusted.agent_token
        try:
            return await op()
        except InvalidToken as exc:
            self.forgotten(used)
            if not (retry and self.bootstrap_token):
                raise NotRegistered(
                    "the server no longer accepts this agent's token"
                    + ("" if self.bootstrap_token else " and no bootstrap token is set")
                ) from exc
        await self.ensure()
        try:
            return await op()
        except InvalidToken as exc:
            self.forgotten(self.trusted.agent_token)
            raise NotRegistered("the server refused the freshly issued agent token") from exc

    def forgotten(self, token: str | None) -> None:
        """On 401 INVALID_TOKEN for `token`: start over cleanly. A request that was in
        flight with an older token must not wipe the one a concurrent re-registration
        just stored."""
        if token != self.trusted.agent_token or not token:
            return
        log.warning(
            "the server no longer accepts this agent's token (target %s); %s",
            self.trusted.target_id,
            "re-registering with the bootstrap token" if self.bootstrap_token
            else "no bootstrap token is configured: running the last verified assignments "
            "until an operator re-registers this node",
        )
        self.trusted.forget_registration()
        self.client.set_token(None)
