"""Metrics: pure rendering, script output parsing, textfiles, and the real listener."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from aami.agent.metrics import (
    AgentMetrics,
    Sample,
    parse_script_metrics,
    record_script_output,
    render,
    serve_metrics,
    write_textfile,
)

REQUIRED = [
    "aami_agent_poll_duration_seconds_bucket",
    "aami_agent_scripts_executed_total",
    "aami_agent_scripts_failed_total",
    "aami_agent_scripts_refused_total",
    "aami_agent_last_successful_poll_timestamp_seconds",
    "aami_agent_spool_pending",
]


def test_render_has_the_documented_names_and_a_valid_histogram() -> None:
    m = AgentMetrics()
    m.observe_poll(0.2, ok=True)
    m.observe_poll(3.0, ok=False)
    m.count_refusal("hash_mismatch")
    m.executed, m.failed, m.spool_pending = 5, 1, 2
    page = render(m, "0.1.0")
    for name in REQUIRED:
        assert name in page
    assert "# TYPE aami_agent_poll_duration_seconds histogram" in page
    assert 'aami_agent_poll_duration_seconds_bucket{le="0.25"} 1' in page
    assert 'aami_agent_poll_duration_seconds_bucket{le="5.0"} 2' in page
    assert 'aami_agent_poll_duration_seconds_bucket{le="+Inf"} 2' in page
    assert "aami_agent_poll_duration_seconds_count 2" in page
    assert 'aami_agent_scripts_refused_total{reason="hash_mismatch"} 1' in page
    assert "aami_agent_scripts_executed_total 5" in page
    assert "aami_agent_spool_pending 2" in page
    assert page.endswith("\n")
    assert render(m, "0.1.0") == page  # pure


def test_parse_json_metrics() -> None:
    out = '{"metrics": [{"name": "gpu_temp_c", "value": 71, "labels": {"gpu": "0"}},' \
          ' {"name": "ok", "value": 1}]}'
    assert parse_script_metrics(out) == [Sample("gpu_temp_c", (("gpu", "0"),), 71.0),
                                         Sample("ok", (), 1.0)]


def test_parse_prometheus_text() -> None:
    out = '# HELP x help\n# TYPE x gauge\nx{a="1",b="q\\"uote"} 3.5\ny 2 1700000000\n'
    assert parse_script_metrics(out) == [Sample("x", (("a", "1"), ("b", 'q"uote')), 3.5),
                                         Sample("y", (), 2.0)]


def test_ordinary_output_is_not_metrics() -> None:
    for text in ["", "all good", "disk ok 80%", '{"metrics": "no"}',
                 '{"metrics": [{"name": "bad name", "value": 1}]}',
                 '{"metrics": [{"name": "x", "value": "1"}]}']:
        assert parse_script_metrics(text) is None, text


def test_textfile_written_atomically(tmp_path: Path) -> None:
    path = write_textfile(str(tmp_path), "disk usage", [Sample("d", (("m", "/"),), 1.0)])
    assert path == tmp_path / "disk_usage.prom"
    assert path.read_text() == '# TYPE d untyped\nd{m="/"} 1\n'
    assert [p.name for p in tmp_path.iterdir()] == ["disk_usage.prom"]
    assert write_textfile(str(tmp_path / "absent"), "x", []) is None


def test_listener_serves_metrics_over_real_tcp() -> None:
    async def main() -> tuple[int, str, int]:
        server = await serve_metrics("127.0.0.1:0", lambda: "aami_agent_spool_pending 0\n")
        port = server.sockets[0].getsockname()[1]

        def fetch(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, ""

        status, body = await asyncio.to_thread(fetch, "/metrics")
        missing, _ = await asyncio.to_thread(fetch, "/other")
        server.close()
        return status, body, missing

    status, body, missing = asyncio.run(main())
    assert status == 200 and body == "aami_agent_spool_pending 0\n" and missing == 404


def test_script_samples_named_like_the_agent_are_refused_and_counted(tmp_path: Path) -> None:
    m = AgentMetrics()
    out = "aami_agent_polls_failed_total 0\naami_agent_info 1\nmy_check 3\n"
    kept = record_script_output(m, "sneaky", out, str(tmp_path))
    assert [s.name for s in kept or []] == ["my_check"]
    assert m.script_samples_refused == 2
    page = render(m, "1.0")
    assert "aami_agent_script_samples_refused_total 2" in page
    assert "aami_agent_polls_failed_total 0" in page and page.count("aami_agent_info") == 3
    assert "aami_agent_" not in (tmp_path / "sneaky.prom").read_text()
