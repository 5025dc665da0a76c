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

A registration the server refuses (token used up, hostname held or not the token's)
is not asked again by every loop: the refusal stands for REFUSAL_HOLD_SECONDS, the
poll says it, and the other loops stay quiet about it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

from aami.agent import __version__
from aami.agent.client import AgentClient, Conflict, InvalidToken, ServerRefused
from aami.agent.state import TrustedState
from aami.agent.wire import Registration

T = TypeVar("T")

log = logging.getLogger("aami.agent.registration")


# After the server refused to register this node, the other loops do not ask again
# for this long: the answer would be the same, and each ask costs the server a use
# check and the log a line.
REFUSAL_HOLD_SECONDS = 60.0
_OTHER_TOKEN_KINDS = {"aami_adm_": "an admin API token", "aami_agt_": "an agent token"}


class NotRegistered(Exception):
    """No agent token, and registration is impossible or was refused.

    `repeated`: the same refusal as a moment ago, given again without asking the
    server (callers other than the poll log it quietly)."""

    def __init__(self, message: str, *, repeated: bool = False) -> None:
        super().__init__(message)
        self.repeated = repeated


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
        self._refused: tuple[float, str] | None = None  # (monotonic time, why)

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
        if self._refused and time.monotonic() - self._refused[0] < REFUSAL_HOLD_SECONDS:
            raise NotRegistered(self._refused[1], repeated=True)
        reg = await self._register()
        self._refused = None
        with self.trusted.batch():
            self.trusted.registered(target_id=reg.target_id, agent_token=reg.agent_token,
                                    hostname=self.hostname)
            self.trusted.set_intervals(reg.poll_interval_seconds, reg.heartbeat_interval_seconds)
        self.client.set_token(reg.agent_token)
        self.on_token(reg.agent_token)
        log.info("registered as target %s (hostname %s)", reg.target_id, self.hostname)

    async def _register(self) -> Registration:
        """One registration; a refusal is remembered for REFUSAL_HOLD_SECONDS."""
        assert self.bootstrap_token
        kind = next((name for prefix, name in _OTHER_TOKEN_KINDS.items()
                     if self.bootstrap_token.startswith(prefix)), None)
        if kind:
            self._refuse(f"the bootstrap token given is {kind}, not a bootstrap token "
                         "(aami_bst_...): give one with --token, AAMI_TOKEN or "
                         "agent.bootstrap_token_file")
        try:
            return await self.client.register(
                self.bootstrap_token, self.hostname, __version__, dict(self.system_info())
            )
        except InvalidToken as exc:
            self._refuse(f"the server refused the bootstrap token: {exc.message} (check "
                         "--token, AAMI_TOKEN or agent.bootstrap_token_file)", exc)
        except ServerRefused as exc:
            # 409: the hostname has an agent, or an admin created it in advance, and the
            # token may not claim it; 403: the token was made for another node
            # (bootstrap-token create --hostname). The server's message says which.
            if not (isinstance(exc, Conflict) or (exc.status == 403 and exc.documented)):
                raise
            self._refuse(f"the server refused to register hostname {self.hostname!r} with "
                         f"this bootstrap token ({exc.message})", exc)

    def _refuse(self, why: str, cause: BaseException | None = None) -> NoReturn:
        self._refused = (time.monotonic(), why)
        raise NotRegistered(why) from cause

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
