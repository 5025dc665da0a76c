"""The old cron runner's route: GET /api/v1/checks/target/hostname/{hostname}."""

from __future__ import annotations

from aiohttp import web

from aami.server.appkeys import CONFIG, DATABASE
from aami.server.routing import LEGACY, Call, Route, json_reply
from aami.server.schemas import HOSTNAME
from aami.server.services import legacy_checks

CHECK = {
    "type": "object",
    "required": ["name", "script_type", "script_content", "language", "config", "version",
                 "hash", "script_hash", "sha256", "instance_id"],
    "properties": {
        "name": {"type": "string"}, "script_type": {"type": "string"},
        "script_content": {"type": "string"}, "language": {"type": "string"},
        "config": {"type": "object"}, "version": {"type": "string"},
        # hash and script_hash: SHA-256 of script_content as served (the old runner's
        # cache key); sha256: the signed content's (see services/legacy_checks.py).
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "script_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "instance_id": {"type": "string"},
    },
}


async def checks(call: Call) -> web.Response:
    config = call.app[CONFIG]
    rows = await call.app[DATABASE].run(
        legacy_checks.checks_for, call.path["hostname"], call.principal,
        default_poll=config.poll_interval_seconds,
        default_heartbeat=config.heartbeat_interval_seconds)
    return json_reply(rows)


ROUTES = [
    Route("GET", "/api/v1/checks/target/hostname/{hostname}", checks,
          "The old cron runner's checks for a host (agent or admin token; no token only "
          "while compat.legacy_checks is on)", LEGACY, "compat",
          path_params={"hostname": HOSTNAME},
          responses={200: {"type": "array", "items": CHECK}}),
]
