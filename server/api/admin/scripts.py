"""Admin API: /api/v1/scripts (signed uploads and their versions).

Uploading needs the operator role: the signature, not the token, decides what may
run, so publishing a signed script is a routine operation; registering the keys that
make signatures count is the admin's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.routing import OPERATOR, VIEWER, Call, Route, json_reply
from aami.server.schemas import (
    BASE64,
    DSSE_ENVELOPE,
    NAME,
    NULLABLE_TIMESTAMP,
    OFFSET_QUERY,
    SHA256,
    TIMESTAMP,
    VERSION,
    limit_query,
    list_of,
    obj,
)
from aami.server.services import scripts
from aami.trust.signed_script import FORMAT

SCRIPT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "version", "sha256", "interpreter", "timeout_seconds",
                 "params_schema", "key_id", "created_at"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "sha256": SHA256,
        "interpreter": {"type": "string"},
        "timeout_seconds": {"type": "integer"},
        "params_schema": {"type": "object"},
        "expires_at": NULLABLE_TIMESTAMP,
        "run_as": {"type": ["array", "null"], "items": {"type": "string"}},
        "key_id": {"type": "string"},
        "key_name": {"type": "string"},
        "created_at": TIMESTAMP,
    },
}
SCRIPT_DETAIL = {
    **SCRIPT,
    "required": [*SCRIPT["required"], "envelope", "statement", "size_bytes"],
    "properties": {**SCRIPT["properties"], "envelope": {"type": "object"},
                   "statement": {"type": "object"}, "size_bytes": {"type": "integer"},
                   "content": {"type": "string", "contentEncoding": "base64"}},
}
UPLOAD_BODY = obj(["format", "envelope", "content"], {
    "format": {"const": FORMAT},
    "envelope": DSSE_ENVELOPE,
    "content": BASE64,
})
NAME_PATH = {"name": NAME}
VERSION_PATH = {"name": NAME, "version": VERSION}


async def upload(call: Call) -> web.Response:
    row, created = await call.app[DATABASE].run(scripts.upload, call.body,
                                                datetime.now(UTC).replace(tzinfo=None))
    return json_reply(row, status=201 if created else 200)


async def list_scripts(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        scripts.list_latest, name=call.query.get("name"), limit=limit, offset=offset)
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def list_versions(call: Call) -> web.Response:
    limit, offset = call.query.get("limit", 50), call.query.get("offset", 0)
    rows, total = await call.app[DATABASE].run(
        scripts.list_versions, call.path["name"], limit=limit, offset=offset)
    return json_reply({"data": rows,
                       "pagination": {"limit": limit, "offset": offset, "total": total}})


async def get_version(call: Call) -> web.Response:
    return json_reply(await call.app[DATABASE].run(
        scripts.read_version, call.path["name"], call.path["version"],
        include_content=call.query.get("include_content", False)))


PAGING = {"limit": limit_query(), "offset": OFFSET_QUERY}

ROUTES = [
    Route("POST", "/api/v1/scripts", upload,
          "Upload a signed script (201 new; 200 when this exact statement is already stored)",
          OPERATOR, "scripts", body=UPLOAD_BODY, responses={200: SCRIPT, 201: SCRIPT}),
    Route("GET", "/api/v1/scripts", list_scripts,
          "List scripts: the newest version of each name, or every version of `name`",
          VIEWER, "scripts", query={"name": NAME, **PAGING},
          responses={200: list_of(SCRIPT)}),
    Route("GET", "/api/v1/scripts/{name}/versions", list_versions,
          "List the versions of a script, newest first", VIEWER, "scripts",
          path_params=NAME_PATH, query=PAGING, responses={200: list_of(SCRIPT)}),
    Route("GET", "/api/v1/scripts/{name}/versions/{version}", get_version,
          "Read one script version: statement, signer, envelope (content on request)",
          VIEWER, "scripts", path_params=VERSION_PATH,
          query={"include_content": {"type": "boolean", "default": False}},
          responses={200: SCRIPT_DETAIL}),
]
