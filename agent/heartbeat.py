"""Heartbeats: the server's view of this node (version, uptime, counters, system info).

The answer carries the current poll and heartbeat intervals, so an operator can slow
down or speed up a fleet from the server without touching nodes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aami.agent import __version__
from aami.agent.client import AgentClient
from aami.agent.runbook import RunBook
from aami.agent.wire import Intervals


def heartbeat_body(
    book: RunBook,
    *,
    started_monotonic: float,
    system_info: Mapping[str, Any],
    polls_total: int = 0,
    polls_failed: int = 0,
) -> dict[str, Any]:
    """`polls_*` count since this process started: the server derives the fleet's poll
    success rate from them (docs/api.md)."""
    return {
        "agent_version": __version__,
        "uptime_seconds": int(time.monotonic() - started_monotonic),
        "scripts_total": book.scripts_total,
        "scripts_success": book.scripts_success,
        "scripts_failed": book.scripts_failed,
        "polls_total": polls_total,
        "polls_failed": polls_failed,
        "system_info": dict(system_info),
    }


async def send_heartbeat(
    client: AgentClient,
    book: RunBook,
    *,
    started_monotonic: float,
    system_info: Mapping[str, Any],
    polls_total: int = 0,
    polls_failed: int = 0,
) -> Intervals:
    body = heartbeat_body(book, started_monotonic=started_monotonic, system_info=system_info,
                          polls_total=polls_total, polls_failed=polls_failed)
    return await client.heartbeat(body)
