"""The old cron runner's view of a target: `GET /api/v1/checks/target/hostname/{h}`.

The same assignments the agent gets (`server.services.assignments`), reshaped into
the array the old runner understood, with the script content inline. The old runner
verifies nothing, so this route is a migration aid only: without a token it answers
only while `compat.legacy_checks` is on (see DESIGN.md section 4).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aami.server.errors import Forbidden, NotFound
from aami.server.models import Target
from aami.server.principal import AgentPrincipal, Principal
from aami.server.services import assignments
from aami.trust.statement import ScriptStatement

# What the old runner called the script's type, by the signed interpreter.
SCRIPT_TYPES = {"bash": "shell", "sh": "shell", "python3": "python", "perl": "perl"}


def _interpreter(envelope: dict[str, Any]) -> str:
    statement = ScriptStatement.from_payload(base64.b64decode(envelope["payload"]))
    return statement.interpreter


def to_legacy(item: dict[str, Any], content: bytes) -> dict[str, Any]:
    """One assignment (the agent wire form) as the old runner's check object."""
    script = item["script"]
    interpreter = _interpreter(script["envelope"])
    language = interpreter.rsplit("/", 1)[-1]
    return {
        "name": script["name"],
        "script_type": SCRIPT_TYPES.get(language, language),
        "script_content": content.decode("utf-8", errors="replace"),
        "language": language,
        "config": item["params"],
        "version": script["version"],
        "hash": script["sha256"],
        "instance_id": str(item["policy_id"]),
    }


def checks_for(hostname: str, principal: Principal | None, *, default_poll: int,
               default_heartbeat: int) -> list[dict[str, Any]]:
    if isinstance(principal, AgentPrincipal) and principal.hostname != hostname:
        # An agent token acts only for its own target.
        raise Forbidden("an agent token may read only its own target's checks")
    target = Target.get_or_none(Target.hostname == hostname)
    if target is None:
        raise NotFound(f"target {hostname!r} does not exist", details={"hostname": hostname})
    snapshot = assignments.load_snapshot()
    state = assignments.load_target_state(target.id)
    view = assignments.build_view(snapshot, target.id, target.hostname, state,
                                  default_poll=default_poll,
                                  default_heartbeat=default_heartbeat)
    checks = []
    for item in json.loads(view.body)["assignments"]:
        content = assignments.load_script_content(item["script"]["sha256"])
        if content is not None:
            checks.append(to_legacy(item, content))
    return checks
