"""Helpers for web UI tests and the UI benchmark: a cookie-keeping HTTP client that
logs in through the real login form, and a small fleet built through the real CLI
and APIs (publisher key, signed script, group, policy, agents)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from tests.harness import ServerProcess, http, run_cli

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Page:
    status: int
    text: str
    location: str | None

    def csrf(self) -> str:
        match = _CSRF.search(self.text)
        assert match, "no CSRF token on the page"
        return match.group(1)


class UiClient:
    """A browser-like client: keeps cookies, does not follow redirects."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Page:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(req, timeout=30) as resp:
                return Page(resp.status, resp.read().decode(), resp.headers.get("Location"))
        except urllib.error.HTTPError as exc:
            return Page(exc.code, exc.read().decode(errors="replace"),
                        exc.headers.get("Location"))

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Page:
        return self.request("POST", path, form)

    def login(self, token: str) -> Page:
        form = self.get("/ui/login")
        page = self.post("/ui/login", {"csrf_token": form.csrf(), "token": token,
                                       "next": "/ui/"})
        assert page.status == 303, (page.status, page.text[:500])
        return page

    def csrf(self) -> str:
        return self.get("/ui/").csrf()


SCHEMA = {"type": "object", "properties": {
    "threshold_percent": {"type": "integer", "minimum": 1, "maximum": 100, "default": 80}},
    "additionalProperties": False}


def publish_script(server: ServerProcess, directory: Path, name: str = "disk-usage",
                   version: str = "1.0.0") -> None:
    """Generate a publisher key, register it, sign and publish a script: the real CLI."""
    key_dir = directory / "keys"
    if not (key_dir / "ops.key").exists():
        run_cli("aami", "keys", "generate", "--out", str(key_dir), "--name", "ops")
        run_cli("aami", "key", "register", str(key_dir / "ops.pub"), "--name", "ops",
                "--server", server.url, "--token", server.token("admin"))
    script = directory / f"{name}.sh"
    script.write_text("#!/bin/bash\necho \"disk usage ok\"\n")
    schema = directory / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    run_cli("aami", "script", "sign", str(script), "--key", str(key_dir / "ops.key"),
            "--name", name, "--version", version, "--params-schema", str(schema),
            "--run-as", "aami-runner", "nobody")
    run_cli("aami", "script", "publish", str(script) + ".signed.json", "--server", server.url,
            "--token", server.token("admin"))


@dataclass
class FakeNode:
    """A node speaking the Agent API over real HTTP (for tests that need history
    without running the agent daemon)."""

    server: ServerProcess
    hostname: str
    target_id: int
    token: str

    @classmethod
    def register(cls, server: ServerProcess, hostname: str, *extra: str) -> FakeNode:
        bootstrap = server.bootstrap_token(*extra)
        reply = http("POST", server.url + "/api/v1/agent/register", token=bootstrap,
                     json_body={"hostname": hostname, "agent_version": "0.1.0",
                                "system_info": {"os": "Debian 12", "cpus": 64}})
        assert reply.status == 201, reply.body
        return cls(server, hostname, reply.json["target_id"], reply.json["agent_token"])

    def heartbeat(self) -> None:
        reply = http("POST", self.server.url + "/api/v1/agent/heartbeat", token=self.token,
                     json_body={"agent_version": "0.1.0", "uptime_seconds": 7200,
                                "scripts_total": 3, "scripts_success": 2,
                                "scripts_failed": 1,
                                "system_info": {"os": "Debian 12", "cpus": 64}})
        assert reply.status == 200, reply.body

    def report(self, script: str, success: bool, *, policy_id: int | None = None,
               minutes_ago: int = 5, stdout: str = "ok\n", stderr: str = "",
               force_token: str | None = None) -> str:
        execution_id = str(uuid.uuid4())
        started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        finished = started + timedelta(seconds=2)
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
        reply = http("POST", self.server.url + "/api/v1/agent/executions", token=self.token,
                     json_body={"executions": [{
                         "id": execution_id, "policy_id": policy_id, "script_name": script,
                         "script_version": "1.0.0", "script_hash": "0" * 64,
                         "started_at": started.strftime(fmt),
                         "finished_at": finished.strftime(fmt), "duration_ms": 2000,
                         "exit_code": 0 if success else 3, "success": success,
                         "stdout": stdout, "stderr": stderr,
                         "error_message": None if success else "exit code 3",
                         "force_token": force_token,
                         "trigger": "force" if force_token else "schedule"}]})
        assert reply.status in (200, 201, 202), reply.body
        return execution_id

    def refuse(self, script: str, reason: str = "bad_signature") -> None:
        reply = http("POST", self.server.url + "/api/v1/agent/security-events",
                     token=self.token, json_body={"events": [{
                         "id": str(uuid.uuid4()),
                         "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                         "script_name": script, "script_version": "9.9.9", "reason": reason,
                         "message": f"refused {script}: {reason}"}]})
        assert reply.status in (200, 201, 202), reply.body

    def assignments(self) -> list[dict[str, Any]]:
        reply = http("GET", self.server.url + "/api/v1/agent/assignments", token=self.token)
        assert reply.status == 200, reply.body
        return list(reply.json["assignments"])

    def wait_for(self, check: Callable[[list[dict[str, Any]]], Any], timeout: float = 10
                 ) -> Any:
        """Poll assignments (as an agent does) until `check` returns something truthy:
        servers refresh their assignment caches about once a second."""
        deadline = time.monotonic() + timeout
        while True:
            assignments = self.assignments()
            found = check(assignments)
            if found or time.monotonic() > deadline:
                assert found, assignments
                return found
            time.sleep(0.2)
