"""The dashboard: fleet status counts, the success metrics against their targets, a
day of outcomes, failing policies, recent failures and refusals, each linking to the
page with the detail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from aami.server.appkeys import DATABASE
from aami.server.services import execution_history, fleet_health, ui_queries
from aami.server.timefmt import utcnow
from aami.server.web.charts import bar_chart
from aami.server.web.pages import page
from aami.server.web.render import render

HOUR = 3600


def _dashboard_data() -> dict[str, Any]:
    """Every query of the page, in one trip to the database thread pool."""
    now = utcnow()
    health = fleet_health.fleet_health(24 * HOUR, now=now)
    counts = health["targets"]
    window = ui_queries.aligned_window(now, HOUR, 24)
    failures, _ = execution_history.list_executions(success=False, limit=10)
    refusals, _ = execution_history.list_security_events(limit=10)
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "buckets": ui_queries.outcome_buckets(window),
        "failing": ui_queries.failing_policies(now - timedelta(hours=24)),
        "failures": failures,
        "refusals": refusals,
        "health": health,
    }


async def dashboard(request: web.Request) -> web.StreamResponse:
    """Dashboard."""
    data = await request.app[DATABASE].run(_dashboard_data)
    buckets = data.pop("buckets")
    data["chart"] = bar_chart(buckets, label="Executions in the last 24 hours")
    data["chart_ok"] = sum(b.success for b in buckets)
    data["chart_failed"] = sum(b.failed for b in buckets)
    return render(request, "dashboard.html", data)


ROUTES = [page("GET", "/ui/", dashboard)]
