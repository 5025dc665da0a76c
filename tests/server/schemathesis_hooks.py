"""schemathesis hooks for tests/server/test_schemathesis.py (loaded through
SCHEMATHESIS_HOOKS): teach the generator the two rules JSON Schema cannot state.

In JSON Schema 2020-12 (OpenAPI 3.1) 3.0 is an integer, so the generator writes
integer fields as `3.0`; the server wants integers written as integers and refuses a
fraction or exponent (docs/api.md, "Errors"; tests/server/test_hostile_bodies.py
proves the refusal). Real clients write `3`; so does the generator after this hook.
The other rule: a rollout's steps ascend (`_ascending_rollout`).
"""

from __future__ import annotations

from typing import Any

import schemathesis


def _integers_as_integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_integers_as_integers(item) for item in value]
    if isinstance(value, dict):
        return {key: _integers_as_integers(item) for key, item in value.items()}
    return value


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    return _ascending_rollout(_integers_as_integers(body))


@schemathesis.hook
def map_query(ctx: Any, query: Any) -> Any:
    if not isinstance(query, dict):
        return query
    return {key: str(int(float(v))) if isinstance(v, str) and _integral_text(v) else v
            for key, v in query.items()}


def _integral_text(text: str) -> bool:
    """`3.0` or `1e2` as the generator prints an integral float."""
    if not any(c in text for c in ".eE"):
        return False
    try:
        number = float(text)
    except ValueError:
        return False
    return number.is_integer() and abs(number) < 2**63


def _ascending_rollout(body: Any) -> Any:
    """Rollout steps are ascending percentages (docs/api.md, policies), an order JSON
    Schema cannot state; the schema already says distinct, 1..100, containing 100."""
    rollout = body.get("rollout") if isinstance(body, dict) else None
    if isinstance(rollout, dict) and isinstance(rollout.get("steps"), list) and \
            all(isinstance(step, int) for step in rollout["steps"]):
        rollout["steps"] = sorted(rollout["steps"])
    return body
