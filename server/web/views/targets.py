"""Targets: the searchable list, and one target's agent status, outcome chart,
force-run form and execution history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.services import execution_history, explain, groups, targets, ui_queries
from aami.server.timefmt import parse_iso, utcnow
from aami.server.web.charts import bar_chart
from aami.server.web.pages import int_param, page
from aami.server.web.render import render

PAGE_SIZE = 50
HISTORY_QUERY = ("script", "success", "since", "until", "cursor")
HISTORY_PAGE = 25
SIX_HOURS = 6 * 3600


def _targets_data(hostname: str, group: str, status: str, offset: int) -> dict[str, Any]:
    rows, total = targets.list_targets(hostname=hostname or None, group=group or None,
                                       status=status or None, limit=PAGE_SIZE, offset=offset)
    group_rows, _ = groups.list_groups(name=None, limit=500, offset=0)
    return {"targets": rows, "total": total, "groups": [g["name"] for g in group_rows]}


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "0")
    return min(int(raw), 10_000_000) if raw.isdigit() else 0


async def target_list(request: web.Request) -> web.StreamResponse:
    """Targets."""
    q = request.query
    status = q.get("status", "") if q.get("status") in targets.STATUSES else ""
    offset = _offset(request)
    data = await request.app[DATABASE].run(_targets_data, q.get("hostname", "").strip(),
                                           q.get("group", ""), status, offset)
    data.update(offset=offset, page_size=PAGE_SIZE, statuses=targets.STATUSES,
                filters={"hostname": q.get("hostname", ""), "group": q.get("group", ""),
                         "status": status})
    return render(request, "targets.html", data)


class HistoryFilters:
    """The execution history's filters, parsed from the query string; a bad value is
    reported next to its field instead of failing the page."""

    def __init__(self, query: Any) -> None:
        self.errors: dict[str, str] = {}
        self.script: str = query.get("script", "").strip()
        success = query.get("success", "")
        self.success: bool | None = {"true": True, "false": False}.get(success)
        self.since = self._time(query, "since")
        self.until = self._time(query, "until")
        self.cursor: str | None = query.get("cursor") or None
        self.raw = {k: query.get(k, "") for k in ("script", "success", "since", "until")}

    def _time(self, query: Any, name: str) -> datetime | None:
        text = query.get(name, "").strip()
        if not text:
            return None
        try:
            return parse_iso(text)
        except ValueError:
            self.errors[name] = "expected a date and time such as 2026-11-27T08:00"
            return None

    def service_args(self) -> dict[str, Any]:
        return {"script": self.script or None, "success": self.success, "since": self.since,
                "until": self.until, "cursor": self.cursor}


def _target_data(target_id: int, filters: HistoryFilters) -> dict[str, Any]:
    target = targets.read(target_id)
    executions, next_cursor = execution_history.list_executions(
        target_id=target_id, limit=HISTORY_PAGE, **filters.service_args())
    window = ui_queries.aligned_window(utcnow(), SIX_HOURS, 28)
    return {
        "target": target,
        "executions": executions,
        "next_cursor": next_cursor,
        "buckets": ui_queries.outcome_buckets(window, target_id=target_id),
        "policies": ui_queries.policies_for_target(target_id),
        "script_names": ui_queries.script_names(),
        "explain": explain.explain(target_id),  # "why does this node run what it runs"
    }


async def target_detail(request: web.Request) -> web.StreamResponse:
    """One target."""
    target_id = int_param(request, "id")
    filters = HistoryFilters(request.query)
    data = await request.app[DATABASE].run(_target_data, target_id, filters)
    data["chart"] = bar_chart(data.pop("buckets"), label="Executions in the last 7 days",
                              time_format="%d %b")
    data["filters"] = filters
    return render(request, "target.html", data)


def _executions_data(filters: HistoryFilters) -> dict[str, Any]:
    executions, next_cursor = execution_history.list_executions(limit=HISTORY_PAGE,
                                                                **filters.service_args())
    return {"executions": executions, "next_cursor": next_cursor,
            "script_names": ui_queries.script_names()}


async def execution_list(request: web.Request) -> web.StreamResponse:
    """Executions across the fleet."""
    filters = HistoryFilters(request.query)
    data = await request.app[DATABASE].run(_executions_data, filters)
    data["filters"] = filters
    return render(request, "executions.html", data)


ROUTES = [
    page("GET", "/ui/executions", execution_list, HISTORY_QUERY),
    page("GET", "/ui/targets", target_list, ("hostname", "group", "status", "offset")),
    page("GET", "/ui/targets/{id}", target_detail, HISTORY_QUERY),
]
