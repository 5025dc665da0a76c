"""Typed application state: every `web.AppKey` the server uses, declared in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aami.server.auth import Authenticator
    from aami.server.caches import AgentCache, Gate
    from aami.server.config import ServerConfig
    from aami.server.db import Database
    from aami.server.http_metrics import HttpMetrics
    from aami.server.services.execution_writer import ExecutionWriter
    from aami.server.services.heartbeats import StatusBuffer
    from aami.server.services.job_runner import JobRunner

CONFIG: web.AppKey[ServerConfig] = web.AppKey("config")
DATABASE: web.AppKey[Database] = web.AppKey("database")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
HTTP_METRICS: web.AppKey[HttpMetrics] = web.AppKey("http_metrics")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
AGENT_CACHE: web.AppKey[AgentCache] = web.AppKey("agent_cache")
STATUS_BUFFER: web.AppKey[StatusBuffer] = web.AppKey("status_buffer")
REGISTRATION_GATE: web.AppKey[Gate] = web.AppKey("registration_gate")
EXECUTION_WRITER: web.AppKey[ExecutionWriter] = web.AppKey("execution_writer")
JOB_RUNNER: web.AppKey[JobRunner] = web.AppKey("job_runner")

# request[AUDIT_NOTE]: what a handler knows that the audit middleware cannot infer from
# the route (api/audit.py): {"action": ..., "object_id": ..., "summary": {...}}.
AUDIT_NOTE = "aami_audit_note"
