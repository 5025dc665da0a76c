"""The old cron runner's view of a target: `GET /api/v1/checks/target/hostname/{h}`.

The same assignments the agent gets (`server.services.assignments`), reshaped into
the array the old runner understood, with the script content inline. The old runner
verifies nothing, so this route is a migration aid only: without a token it answers
only while `compat.legacy_checks` is on (see docs/api.md, "The old cron runner").

What the old runner does with an item, and what we serve for it:

- it caches the content as `<name>_<script_hash>.sh` and rewrites the file only when
  that name is new, so `script_hash` must change whenever the served bytes change;
- it executes that file directly (no interpreter), so the content must start with a
  shebang naming the signed interpreter;
- it knew languages by the old server's names (`python`, not `python3`).

So the served content is the signed content with a shebang line for the signed
interpreter prepended (unless the first line already runs that interpreter), and `hash` and
`script_hash` are both the SHA-256 of the served bytes, not of the signed content:
a new signed version, or a new interpreter for the same bytes, is a new cache name.
`sha256` carries the signed content's hash (the one the agent and execution history
use).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from aami.server.errors import Forbidden, NotFound
from aami.server.models import Target
from aami.server.principal import AgentPrincipal, Principal
from aami.server.services import assignments
from aami.trust.statement import ScriptStatement

# What the old runner called the script's type, by the signed interpreter.
SCRIPT_TYPES = {"bash": "shell", "sh": "shell", "python": "python", "perl": "perl"}
# The old server's language names where ours differ (python3, python3.11 -> python).
_OLD_PYTHON = re.compile(r"python[0-9.]*")


def _interpreter(envelope: dict[str, Any]) -> str:
    statement = ScriptStatement.from_payload(base64.b64decode(envelope["payload"]))
    return statement.interpreter


def legacy_language(interpreter: str) -> str:
    name = interpreter.rsplit("/", 1)[-1]
    return "python" if _OLD_PYTHON.fullmatch(name) else name


def shebang(interpreter: str) -> str:
    """The line that makes the kernel run a file as the agent would: an absolute
    interpreter as is; a bare name (bash, python3, ...) looked up on PATH by env."""
    if interpreter.startswith("/"):
        return f"#!{interpreter}"
    return f"#!/usr/bin/env {interpreter}"


def runnable_content(content: bytes, interpreter: str) -> str:
    """The signed content as the old runner can execute it.

    The agent runs `interpreter file`, where a shebang already in the file is just a
    comment. Prepending ours keeps that true for any other first line (sh, bash,
    python and perl all read `#!...` on line 2 as a comment); the only cost is that
    line numbers in the script's error messages are one higher under the old runner.
    """
    text = content.decode("utf-8", errors="replace")
    if _runs_as(text.split("\n", 1)[0], interpreter):
        return text
    return f"{shebang(interpreter)}\n{text}"


def _runs_as(first_line: str, interpreter: str) -> bool:
    """Whether a first line already makes the kernel run the interpreter the agent
    would: `#!/bin/bash` or `#!/usr/bin/env bash` for `bash`, the exact path for an
    absolute one; any argument (`-e`) would change the run, so it does not count."""
    if not first_line.startswith("#!"):
        return False
    words = first_line[2:].split()
    if len(words) == 2 and words[0].rsplit("/", 1)[-1] == "env":
        words = words[1:]
    if len(words) != 1:
        return False
    if interpreter.startswith("/"):
        return words[0] == interpreter
    return words[0].rsplit("/", 1)[-1] == interpreter


def to_legacy(item: dict[str, Any], content: bytes) -> dict[str, Any]:
    """One assignment (the agent wire form) as the old runner's check object."""
    script = item["script"]
    interpreter = _interpreter(script["envelope"])
    language = legacy_language(interpreter)
    served = runnable_content(content, interpreter)
    served_hash = hashlib.sha256(served.encode("utf-8")).hexdigest()
    return {
        "name": script["name"],
        "script_type": SCRIPT_TYPES.get(language, language),
        "script_content": served,
        "language": language,
        "config": item["params"],
        "version": script["version"],
        "hash": served_hash,
        "script_hash": served_hash,
        "sha256": script["sha256"],
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
