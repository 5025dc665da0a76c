"""Groups and bootstrap tokens: how targets are organised, and how new nodes join."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from aami.server.appkeys import AUDIT_NOTE, DATABASE
from aami.server.errors import ApiError
from aami.server.http_errors import status_of
from aami.server.schemas import GROUP_CREATE_BODY, is_hostname
from aami.server.services import groups, targets, tokens, ui_queries
from aami.server.timefmt import utcnow
from aami.server.tokens import Role
from aami.server.validation import check_schema
from aami.server.web.middleware import require_role
from aami.server.web.pages import int_param, page, see_other
from aami.server.web.render import render
from aami.units import parse_duration

MEMBERS_PAGE = 50
DEFAULT_BOOTSTRAP_EXPIRY = "30d"


def _field(exc: ApiError, default: str) -> str:
    """The form field an API error names (`body.name` -> `name`)."""
    return str(exc.details.get("field", default)).removeprefix("body.").split(".")[0]


async def group_list(request: web.Request, *, errors: dict[str, str] | None = None,
                     form: dict[str, Any] | None = None, status: int = 200
                     ) -> web.StreamResponse:
    """Groups."""
    rows, total = await request.app[DATABASE].run(groups.list_groups, name=None, limit=500,
                                                  offset=0)
    return render(request, "groups.html", {
        "groups": rows, "total": total, "errors": errors or {},
        "form": form or {"name": "", "description": "", "priority": "0"}}, status=status)


async def group_create(request: web.Request) -> web.StreamResponse:
    """Create a group (operator)."""
    require_role(request, Role.OPERATOR)
    form = await request.post()
    values = {k: str(form.get(k, "")).strip() for k in ("name", "description", "priority")}
    body: dict[str, Any] = {"name": values["name"], "description": values["description"]}
    try:
        body["priority"] = int(values["priority"] or "0")
    except ValueError:
        return await group_list(request, errors={"priority": "expected a whole number"},
                                form=values, status=400)
    try:
        check_schema(body, GROUP_CREATE_BODY, "body")  # the API's own rules
        created = await request.app[DATABASE].run(groups.create, body)
    except ApiError as exc:
        return await group_list(request, errors={_field(exc, "name"): exc.message},
                                form=values, status=status_of(exc))
    raise see_other(f"/ui/groups/{created['id']}")


def _group_data(group_id: int, offset: int) -> dict[str, Any]:
    group = groups.get(group_id)
    members, total = targets.list_targets(hostname=None, group=group.name, status=None,
                                          limit=MEMBERS_PAGE, offset=offset)
    scoped = ui_queries.policies_scoped_to_group(group_id)
    return {"group": groups.to_wire(group), "members": members, "total": total,
            "policies": scoped, "runnable": ui_queries.policies_for_group(group_id)}


async def group_detail(request: web.Request) -> web.StreamResponse:
    """One group: members, policies, force-run."""
    raw = request.query.get("offset", "0")
    offset = int(raw) if raw.isdigit() else 0
    data = await request.app[DATABASE].run(_group_data, int_param(request, "id"), offset)
    data.update(offset=offset, page_size=MEMBERS_PAGE)
    return render(request, "group.html", data)


async def bootstrap_list(request: web.Request, *, created: dict[str, Any] | None = None,
                         errors: dict[str, str] | None = None,
                         form: dict[str, str] | None = None, status: int = 200
                         ) -> web.StreamResponse:
    """Bootstrap tokens (admin)."""
    require_role(request, Role.ADMIN)
    rows, _ = await request.app[DATABASE].run(tokens.list_bootstrap_tokens, limit=500,
                                              offset=0)
    group_rows, _ = await request.app[DATABASE].run(groups.list_groups, name=None,
                                                    limit=500, offset=0)
    server_url = f"{request.scheme}://{request.host}"
    return render(request, "bootstrap_tokens.html", {
        "tokens": rows, "groups": [g["name"] for g in group_rows], "created": created,
        "server_url": server_url, "errors": errors or {},
        "form": form or {"name": "", "max_uses": "1", "expires": DEFAULT_BOOTSTRAP_EXPIRY,
                         "group": "", "hostname": ""}}, status=status)


async def bootstrap_create(request: web.Request) -> web.StreamResponse:
    """Create a bootstrap token (admin); the secret is shown on this answer only."""
    require_role(request, Role.ADMIN)
    form = await request.post()
    values = {k: str(form.get(k, "")).strip()
              for k in ("name", "max_uses", "expires", "group", "hostname")}
    errors: dict[str, str] = {}
    max_uses = int(values["max_uses"]) if values["max_uses"].isdigit() else 0
    if not 1 <= max_uses <= 1_000_000:
        errors["max_uses"] = "expected a whole number from 1 to 1000000"
    try:
        seconds = parse_duration(values["expires"] or DEFAULT_BOOTSTRAP_EXPIRY)
        if not 0 < seconds <= 10 * 31_536_000:
            raise ValueError("must be between 1s and 3650d")
    except (ValueError, TypeError) as exc:
        errors["expires"] = f"expected a duration such as 30d or 12h ({exc})"
        seconds = 0
    if len(values["name"]) > 128:
        errors["name"] = "at most 128 characters"
    if values["hostname"] and not is_hostname(values["hostname"]):
        errors["hostname"] = "a hostname: letters, digits, '.' and '-'"
    if errors:
        return await bootstrap_list(request, errors=errors, form=values, status=400)
    try:
        secret, row = await request.app[DATABASE].run(
            tokens.create_bootstrap_token, name=values["name"], max_uses=max_uses,
            expires_at=utcnow() + timedelta(seconds=seconds), group=values["group"] or None,
            hostname=values["hostname"] or None)
    except ApiError as exc:
        return await bootstrap_list(request, errors={"group": exc.message}, form=values,
                                    status=status_of(exc))
    request[AUDIT_NOTE] = {"object_id": row["id"]}  # the page answers 200, no Location
    return await bootstrap_list(request, created={**row, "token": secret})


async def bootstrap_revoke(request: web.Request) -> web.StreamResponse:
    """Revoke a bootstrap token (admin)."""
    require_role(request, Role.ADMIN)
    await request.app[DATABASE].run(tokens.revoke_bootstrap_token, int_param(request, "id"))
    raise see_other("/ui/bootstrap-tokens")


ROUTES = [
    page("GET", "/ui/groups", group_list),
    page("POST", "/ui/groups", group_create),
    page("GET", "/ui/groups/{id}", group_detail, ("offset",)),
    page("GET", "/ui/bootstrap-tokens", bootstrap_list),
    page("POST", "/ui/bootstrap-tokens", bootstrap_create),
    page("POST", "/ui/bootstrap-tokens/{id}/revoke", bootstrap_revoke),
]
