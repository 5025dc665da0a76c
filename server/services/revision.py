"""The configuration revision: bumped inside every transaction that can change what
an agent is assigned, read by every process to know when its caches are stale."""

from __future__ import annotations

from server.models import ConfigRevision, utcnow


def bump() -> None:
    """Call inside the transaction that makes the change."""
    ConfigRevision.update(value=ConfigRevision.value + 1, changed_at=utcnow()).where(
        ConfigRevision.id == 1
    ).execute()


def current() -> int:
    row = ConfigRevision.get_or_none(ConfigRevision.id == 1)
    return int(row.value) if row else 0
