"""Admin API: GET /api/v1/fleet/health, the fleet's success metrics (viewers read)."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.errors import NotFound, ValidationFailed
from aami.server.routing import VIEWER, Call, Route, json_reply
from aami.server.services import fleet_health
from aami.units import parse_duration

RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
COUNT = {"type": "integer", "minimum": 0}
HEALTH = {
    "type": "object",
    "required": ["window_seconds", "heartbeat_compliance", "poll_success_rate",
                 "script_success_rate", "targets", "policies", "counts"],
    "properties": {
        "window_seconds": {"type": "integer"},
        "heartbeat_compliance": RATE,
        "poll_success_rate": RATE,
        "script_success_rate": RATE,
        "targets": {"type": "object", "required": ["online", "stale", "offline", "never"],
                    "properties": {s: COUNT for s in ("online", "stale", "offline", "never")}},
        "policies": {"type": "array", "items": {
            "type": "object", "required": ["policy_id", "name", "success_rate", "runs"],
            "properties": {"policy_id": {"type": "integer"}, "name": {"type": "string"},
                           "success_rate": RATE, "runs": COUNT}}},
        "counts": {"type": "object", "properties": {
            name: COUNT for name in ("heartbeat_gaps", "heartbeat_gaps_ok", "polls",
                                     "polls_failed", "runs", "runs_ok")}},
        "targets_expected": {"type": "object"},
    },
}


def window_seconds(text: str) -> int:
    """`24h`, `15m`, `7d` (or plain seconds) within the limits; ValidationFailed else."""
    try:
        seconds = int(parse_duration(text))
    except ValueError:
        seconds = -1
    low, high = fleet_health.MIN_WINDOW_SECONDS, fleet_health.MAX_WINDOW_SECONDS
    if not low <= seconds <= high:
        raise ValidationFailed(
            f"query.window: expected a duration from {low}s to {high // 86400}d such as 24h",
            details={"field": "query.window"})
    return seconds


async def health(call: Call) -> web.Response:
    seconds = window_seconds(call.query.get("window", "24h"))
    target_id = call.query.get("target_id")
    try:
        body = await call.app[DATABASE].run(fleet_health.fleet_health, seconds,
                                            target_id=target_id)
    except NotFound:
        raise NotFound(f"target {target_id} does not exist",
                       details={"field": "query.target_id"}) from None
    return json_reply(body)


ROUTES = [
    Route("GET", "/api/v1/fleet/health", health,
          "The fleet's success metrics over a window: heartbeat interval compliance, poll "
          "and script success rates, target states, per-policy success (one target's with "
          "`target_id`)", VIEWER, "fleet",
          # The pattern keeps the document's promise inside 60s..30d (fleet_health).
          query={"window": {"type": "string", "maxLength": 16, "pattern": (
                     r"^(([6-9][0-9]|[1-9][0-9]{2,5})s?|[1-9][0-9]{0,3}m"
                     r"|([1-9][0-9]?|[1-6][0-9]{2}|7[01][0-9]|720)h|([1-9]|[12][0-9]|30)d)$"),
                            "description": "a duration such as 1h, 24h, 7d (default 24h)"},
                 "target_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
          responses={200: HEALTH}),
]
