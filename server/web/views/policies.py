"""Policies: list, detail (outcomes, history, force-run), create, edit, disable.

The form is turned into the same JSON body the API takes, checked against the API's
own schema and handed to the same service, so the UI accepts exactly what the API
accepts. A refusal names a field (`body.params.threshold_percent`); the form shows
the message next to that field.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.errors import ApiError
from aami.server.http_errors import status_of
from aami.server.schemas import POLICY_CREATE_BODY
from aami.server.services import execution_history, groups, policies, ui_queries
from aami.server.timefmt import utcnow
from aami.server.tokens import Role
from aami.server.validation import check_schema
from aami.server.web.charts import bar_chart
from aami.server.web.middleware import require_role
from aami.server.web.pages import int_param, page, see_other
from aami.server.web.render import render
from aami.server.web.views.targets import HISTORY_PAGE, HISTORY_QUERY, HistoryFilters

FORM_FIELDS = ("name", "script", "version", "scope", "group", "target", "params", "mode",
               "interval", "timeout", "run_as", "priority", "rollout")
# API error field -> form field
_FIELD_MAP = {"schedule": "mode", "interval_seconds": "interval", "timeout_seconds": "timeout"}


class FormError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def form_field(api_field: str) -> str:
    """`body.params.x` -> `params`; `body.schedule.interval_seconds` -> `interval`."""
    parts = api_field.removeprefix("body.").split(".")
    if parts[0] == "schedule" and len(parts) > 1:
        return _FIELD_MAP.get(parts[1], parts[1])
    return _FIELD_MAP.get(parts[0], parts[0])


def body_from_form(form: dict[str, str], enabled: bool) -> dict[str, Any]:
    """The API body for the policy form (pure); FormError names a bad field."""
    try:
        params = json.loads(form["params"] or "{}")
    except ValueError as exc:
        raise FormError("params", f"not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise FormError("params", "must be a JSON object such as {\"threshold\": 80}")
    try:
        priority = int(form["priority"] or "0")
    except ValueError:
        raise FormError("priority", "expected a whole number") from None
    scope = form["scope"]
    schedule: dict[str, Any] = {"mode": form["mode"]}
    if form["mode"] == "interval":
        schedule["interval"] = form["interval"]
    body: dict[str, Any] = {
        "name": form["name"], "script": form["script"], "version": form["version"] or "latest",
        "scope": scope, "group": form["group"] or None if scope == "group" else None,
        "target": form["target"] or None if scope == "target" else None,
        "params": params, "schedule": schedule, "priority": priority, "enabled": enabled,
        "run_as": form["run_as"] or None,
    }
    if form["timeout"]:
        body["timeout"] = form["timeout"]
    # The rollout block (docs/rollouts.md) as JSON; empty: none. Kept across edits.
    try:
        body["rollout"] = json.loads(form.get("rollout") or "null")
    except ValueError as exc:
        raise FormError("rollout", f"not valid JSON: {exc}") from None
    return body


def form_from_policy(policy: dict[str, Any]) -> dict[str, str]:
    interval = policy["schedule"]["interval_seconds"]
    return {
        "name": policy["name"], "script": policy["script"], "version": policy["version"],
        "scope": policy["scope"], "group": policy["group"] or "",
        "target": policy["target"] or "", "params": json.dumps(policy["params"], indent=2),
        "mode": policy["schedule"]["mode"], "interval": f"{interval}s" if interval else "",
        "timeout": f"{policy['timeout_seconds']}s" if policy["timeout_seconds"] else "",
        "run_as": policy["run_as"] or "", "priority": str(policy["priority"]),
        "rollout": json.dumps(policy["rollout"]) if policy.get("rollout") else "",
    }


EMPTY_FORM = {"name": "", "script": "", "version": "latest", "scope": "global", "group": "",
              "target": "", "params": "{}", "mode": "interval", "interval": "60s",
              "timeout": "", "run_as": "", "priority": "0", "rollout": ""}


async def policy_list(request: web.Request) -> web.StreamResponse:
    """Policies."""
    q = request.query
    enabled = {"true": True, "false": False}.get(q.get("enabled", ""))
    scope = q.get("scope") if q.get("scope") in ("global", "group", "target") else None
    rows, total = await request.app[DATABASE].run(
        policies.list_policies, name=q.get("name") or None, scope=scope, script=None,
        enabled=enabled, limit=500, offset=0)
    return render(request, "policies.html", {"policies": rows, "total": total})


def _policy_data(policy_id: int, filters: HistoryFilters) -> dict[str, Any]:
    policy = policies.to_wire(policies.get(policy_id))
    executions, next_cursor = execution_history.list_executions(
        policy_id=policy_id, limit=HISTORY_PAGE, **filters.service_args())
    group_rows, _ = groups.list_groups(name=None, limit=500, offset=0)
    window = ui_queries.aligned_window(utcnow(), 3600, 24)
    return {"policy": policy, "executions": executions, "next_cursor": next_cursor,
            "buckets": ui_queries.outcome_buckets(window, policy_id=policy_id),
            "script_names": [policy["script"]], "groups": [g["name"] for g in group_rows]}


async def policy_detail(request: web.Request) -> web.StreamResponse:
    """One policy."""
    policy_id = int_param(request, "id")
    filters = HistoryFilters(request.query)
    data = await request.app[DATABASE].run(_policy_data, policy_id, filters)
    data["chart"] = bar_chart(data.pop("buckets"), label="Runs of this policy, last 24 hours")
    data["filters"] = filters
    return render(request, "policy.html", data)


async def _form_page(request: web.Request, form: dict[str, str], *, enabled: bool,
                     policy_id: int | None, errors: dict[str, str] | None = None,
                     status: int = 200) -> web.StreamResponse:
    def choices() -> dict[str, Any]:
        group_rows, _ = groups.list_groups(name=None, limit=500, offset=0)
        return {"script_names": ui_queries.script_names(),
                "groups": [g["name"] for g in group_rows]}

    data = await request.app[DATABASE].run(choices)
    return render(request, "policy_form.html", {
        **data, "form": form, "enabled": enabled, "policy_id": policy_id,
        "errors": errors or {}}, status=status)


async def policy_new(request: web.Request) -> web.StreamResponse:
    """New policy form (operator)."""
    require_role(request, Role.OPERATOR)
    form = {**EMPTY_FORM, "script": request.query.get("script", "")}
    return await _form_page(request, form, enabled=True, policy_id=None)


async def policy_edit(request: web.Request) -> web.StreamResponse:
    """Edit policy form (operator)."""
    require_role(request, Role.OPERATOR)
    policy_id = int_param(request, "id")
    policy = policies.to_wire(await request.app[DATABASE].run(policies.get, policy_id))
    return await _form_page(request, form_from_policy(policy), enabled=policy["enabled"],
                            policy_id=policy_id)


async def policy_save(request: web.Request) -> web.StreamResponse:
    """Create or replace a policy from the form (operator)."""
    require_role(request, Role.OPERATOR)
    policy_id = int_param(request, "id") if "id" in request.match_info else None
    posted = await request.post()
    form = {k: str(posted.get(k, "")).strip() for k in FORM_FIELDS}
    enabled = posted.get("enabled") == "on"
    try:
        body = body_from_form(form, enabled)
        check_schema(body, POLICY_CREATE_BODY, "body")
        if policy_id is None:
            saved = await request.app[DATABASE].run(policies.create, body)
        else:
            saved = await request.app[DATABASE].run(policies.replace, policy_id, body)
    except FormError as exc:
        return await _form_page(request, form, enabled=enabled, policy_id=policy_id,
                                errors={exc.field: exc.message}, status=400)
    except ApiError as exc:
        if status_of(exc) == 404 and "field" not in exc.details:
            raise
        field = form_field(str(exc.details.get("field", "body.name")))
        return await _form_page(request, form, enabled=enabled, policy_id=policy_id,
                                errors={field: exc.message}, status=status_of(exc))
    raise see_other(f"/ui/policies/{saved['id']}")


async def policy_set_enabled(request: web.Request) -> web.StreamResponse:
    """Enable or disable a policy (operator)."""
    require_role(request, Role.OPERATOR)
    policy_id = int_param(request, "id")
    posted = await request.post()
    await request.app[DATABASE].run(policies.patch, policy_id,
                                    {"enabled": posted.get("enabled") == "true"})
    raise see_other(f"/ui/policies/{policy_id}")


ROUTES = [
    page("GET", "/ui/policies", policy_list, ("name", "scope", "enabled")),
    page("GET", "/ui/policies/new", policy_new, ("script",)),
    page("POST", "/ui/policies/new", policy_save),
    page("GET", "/ui/policies/{id}", policy_detail, HISTORY_QUERY),
    page("GET", "/ui/policies/{id}/edit", policy_edit),
    page("POST", "/ui/policies/{id}/edit", policy_save),
    page("POST", "/ui/policies/{id}/enabled", policy_set_enabled),
]
