"""Scripts and publisher keys: what may run, and who vouched for it.

Scripts are read-only here (they are signed on an operator's workstation and
published with `aami script publish`); publisher keys are registered and revoked by
admins, exactly as through the API.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.errors import ApiError
from aami.server.http_errors import status_of
from aami.server.services import publisher_keys, scripts, ui_queries
from aami.server.tokens import Role
from aami.server.web.middleware import require_role
from aami.server.web.pages import int_param, page, see_other
from aami.server.web.render import render


async def script_list(request: web.Request) -> web.StreamResponse:
    """Scripts."""
    rows, total = await request.app[DATABASE].run(scripts.list_latest, name=None, limit=500,
                                                  offset=0)
    return render(request, "scripts.html", {"scripts": rows, "total": total})


def _script_data(name: str, version: str | None) -> dict[str, Any]:
    versions, _ = scripts.list_versions(name, limit=500, offset=0)
    chosen = version or versions[0]["version"]
    detail = scripts.read_version(name, chosen, include_content=False)
    content = bytes(scripts.get_version(name, chosen).content)
    using = ui_queries.policies_using_script(name)
    return {"versions": versions, "script": detail, "policies": using,
            "content": content.decode("utf-8", errors="replace")[:200_000]}


async def script_detail(request: web.Request) -> web.StreamResponse:
    """One script and its versions."""
    name = request.match_info["name"]
    version = request.match_info.get("version")
    data = await request.app[DATABASE].run(_script_data, name, version)
    return render(request, "script.html", data)


async def key_list(request: web.Request, *, errors: dict[str, str] | None = None,
                   form: dict[str, str] | None = None, status: int = 200
                   ) -> web.StreamResponse:
    """Publisher keys."""
    rows, _ = await request.app[DATABASE].run(publisher_keys.list_keys, revoked=None,
                                              limit=500, offset=0)
    return render(request, "keys.html", {"keys": rows, "errors": errors or {},
                                         "form": form or {"name": "", "public_key": ""}},
                  status=status)


async def key_register(request: web.Request) -> web.StreamResponse:
    """Register a publisher key (admin)."""
    require_role(request, Role.ADMIN)
    form = await request.post()
    values = {"name": str(form.get("name", "")).strip(),
              "public_key": str(form.get("public_key", "")).strip()}
    if not values["name"]:
        return await key_list(request, errors={"name": "a name is required"}, form=values,
                              status=400)
    try:
        await request.app[DATABASE].run(publisher_keys.create, values["name"],
                                        values["public_key"])
    except ApiError as exc:
        field = str(exc.details.get("field", "body.public_key")).removeprefix("body.")
        return await key_list(request, errors={field: exc.message.split(": ", 1)[-1]},
                              form=values, status=status_of(exc))
    raise see_other("/ui/keys")


async def key_revoke(request: web.Request) -> web.StreamResponse:
    """Revoke a publisher key (admin)."""
    require_role(request, Role.ADMIN)
    await request.app[DATABASE].run(publisher_keys.revoke, int_param(request, "id"))
    raise see_other("/ui/keys")


ROUTES = [
    page("GET", "/ui/scripts", script_list),
    page("GET", "/ui/scripts/{name}", script_detail),
    page("GET", "/ui/scripts/{name}/{version}", script_detail),
    page("GET", "/ui/keys", key_list),
    page("POST", "/ui/keys", key_register),
    page("POST", "/ui/keys/{id}/revoke", key_revoke),
]
