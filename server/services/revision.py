"""Counters that tell every server process when its caches are stale.

Row 1 of `config_revision`, the configuration revision, is bumped inside every
transaction that can change what an agent is assigned; the Agent API cache drops
its views when it moves. Row 2, the credentials revision, is bumped inside every
transaction that revokes a token (admin token revoked, agent token rotated or
replaced, target deleted); the authenticator drops its resolved tokens when it
moves. One watcher query per second reads both (`server.caches`).
"""

from __future__ import annotations

from aami.server.models import ConfigRevision
from aami.server.timefmt import utcnow

CONFIG = 1
CREDENTIALS = 2


def bump(counter: int = CONFIG) -> None:
    """Call inside the transaction that makes the change."""
    ConfigRevision.update(value=ConfigRevision.value + 1, changed_at=utcnow()).where(
        ConfigRevision.id == counter
    ).execute()


def bump_credentials() -> None:
    """Call inside the transaction that revokes a token."""
    bump(CREDENTIALS)


def current() -> int:
    row = ConfigRevision.get_or_none(ConfigRevision.id == CONFIG)
    return int(row.value) if row else 0


def both() -> tuple[int, int]:
    """(configuration revision, credentials revision), in one query."""
    rows = ConfigRevision.select().where(ConfigRevision.id.in_([CONFIG, CREDENTIALS]))
    values = {row.id: row.value for row in rows}
    return int(values.get(CONFIG, 0)), int(values.get(CREDENTIALS, 0))
