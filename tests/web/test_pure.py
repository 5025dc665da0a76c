"""Pure pieces of the web UI: chart drawing, text filters, form <-> API body."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from aami.server.services.ui_queries import Bucket, aligned_window
from aami.server.web.charts import _nice_max, bar_chart
from aami.server.web.render import human_duration, query_with, reltime
from aami.server.web.views.policies import (
    EMPTY_FORM,
    FormError,
    body_from_form,
    form_field,
    form_from_policy,
)

T0 = datetime(2026, 11, 27, 8, 0)


@pytest.mark.parametrize(("value", "expected"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20),
                                                 (150, 200), (501, 1000)])
def test_axis_maximum_is_round(value: int, expected: int) -> None:
    assert _nice_max(value) == expected


def test_chart_draws_stacked_bars_with_counts_in_titles() -> None:
    svg = bar_chart([Bucket(T0, 8, 2), Bucket(T0 + timedelta(hours=1), 0, 0)],
                    label="Runs <today>")
    assert svg.count('class="s"') == 1 and svg.count('class="f"') == 1
    assert "2026-11-27 08:00 UTC: 8 succeeded, 2 failed" in svg
    assert "Runs &lt;today&gt;: 8 succeeded, 2 failed" in svg  # escaped label
    assert "<today>" not in svg
    # The failure bar sits on top of the success bar: 8/10 and 2/10 of the plot height.
    assert 'height="121.6"' in svg and 'height="30.4"' in svg


def test_empty_chart_still_renders() -> None:
    svg = bar_chart([], label="nothing")
    assert svg.startswith("<svg") and "0 succeeded, 0 failed" in svg


def test_aligned_window_ends_after_now_on_a_bucket_boundary() -> None:
    window = aligned_window(datetime(2026, 11, 27, 8, 42, 10), 3600, 24)
    assert window.end == datetime(2026, 11, 27, 9, 0)
    assert window.start == datetime(2026, 11, 26, 9, 0)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (61, "1m 1s"),
                                               (3725, "1h 2m"), (90061, "1d 1h")])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_reltime() -> None:
    assert reltime(None) == "never"
    assert reltime(T0 - timedelta(minutes=3), now=T0) == "3m ago"
    assert reltime(T0 + timedelta(hours=2), now=T0) == "in 2h"
    assert reltime("2026-11-27T07:59:58Z", now=T0) == "just now"


def test_query_with_changes_and_removes_keys() -> None:
    assert query_with({"a": "1", "cursor": "x"}, cursor=None) == "?a=1"
    assert query_with({"a": "1"}, offset=50) == "?a=1&offset=50"
    assert query_with({}, offset=None) == "?"


@pytest.mark.parametrize(("api", "form"), [
    ("body.params.threshold_percent", "params"), ("body.schedule.interval_seconds", "interval"),
    ("body.schedule.interval", "interval"), ("body.schedule.mode", "mode"),
    ("body.timeout_seconds", "timeout"), ("body.run_as", "run_as"), ("body.name", "name")])
def test_api_fields_map_to_form_fields(api: str, form: str) -> None:
    assert form_field(api) == form


def test_form_becomes_the_api_body() -> None:
    form = {**EMPTY_FORM, "name": "p", "script": "s", "scope": "group", "group": "g",
            "target": "ignored", "params": '{"a": 1}', "interval": "5m", "timeout": "30s"}
    body = body_from_form(form, enabled=False)
    assert body["group"] == "g" and body["target"] is None
    assert body["schedule"] == {"mode": "interval", "interval": "5m"}
    assert body["timeout"] == "30s" and body["params"] == {"a": 1} and body["enabled"] is False
    once = body_from_form({**form, "mode": "once"}, enabled=True)
    assert once["schedule"] == {"mode": "once"}


@pytest.mark.parametrize(("change", "field"), [({"params": "[1]"}, "params"),
                                               ({"params": "{"}, "params"),
                                               ({"priority": "high"}, "priority"),
                                               ({"rollout": "{steps"}, "rollout")])
def test_bad_form_values_name_their_field(change: dict[str, str], field: str) -> None:
    with pytest.raises(FormError) as caught:
        body_from_form({**EMPTY_FORM, **change}, enabled=True)
    assert caught.value.field == field


def test_policy_round_trips_through_the_form() -> None:
    policy = {"name": "p", "script": "s", "version": "1.2.0", "scope": "target", "group": None,
              "target": "n1", "params": {"x": [1, 2]}, "priority": 5, "enabled": True,
              "schedule": {"mode": "interval", "interval_seconds": 90},
              "timeout_seconds": 20, "run_as": "aami-runner"}
    body = body_from_form(form_from_policy(policy), enabled=True)
    assert body["params"] == {"x": [1, 2]} and body["target"] == "n1"
    assert body["schedule"] == {"mode": "interval", "interval": "90s"}
    assert body["timeout"] == "20s" and body["version"] == "1.2.0" and body["priority"] == 5
    assert body["rollout"] is None
    # Editing a policy in the UI keeps its rollout block (docs/rollouts.md).
    staged = {**policy, "rollout": {"steps": [10, 100], "wait_seconds": 60, "min_runs": 1,
                                    "max_failure_ratio": 0.1, "on_failure": "halt"}}
    assert body_from_form(form_from_policy(staged), enabled=True)["rollout"] == staged["rollout"]
