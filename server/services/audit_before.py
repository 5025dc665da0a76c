"""The "before" half of an audit entry's summary: what an update or delete is about
to change, read just before the change (services/audit.py holds the log itself)."""

from __future__ import annotations

from typing import Any

from aami.server.errors import ApiError
from aami.server.services import groups, policies, targets

DROPPED = ("created_at", "updated_at", "agent_status", "status")


def before_state(object_type: str, object_id: str) -> dict[str, Any] | None:
    """The wire form of a policy, group or target; None for other objects or a missing one."""
    readers = {"policy": lambda i: policies.to_wire(policies.get(i)),
               "group": lambda i: groups.to_wire(groups.get(i)),
               "target": targets.read}
    reader = readers.get(object_type)
    if reader is None or not object_id.isdigit():
        return None
    try:
        state = dict(reader(int(object_id)))
    except ApiError:
        return None
    for key in DROPPED:
        state.pop(key, None)
    return state
