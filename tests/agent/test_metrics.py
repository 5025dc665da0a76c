"""Metrics: pure rendering, script output parsing, textfiles, and the real listener."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from aami.agent.metrics import (
    AgentMetrics,
    Sample,
    parse_script_metrics,
    record_script_output,
    render,
    render_samples,
    serve_metrics,
    write_textfile,
)
from tests.harness import require

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
    assert parse_script_metrics(out) == [
        Sample("x", (("a", "1"), ("b", 'q"uote')), 3.5, type="gauge", help="help"),
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
    assert m.script_samples_refused == {"reserved": 2}
    page = render(m, "1.0")
    assert 'aami_agent_script_samples_refused_total{reason="reserved"} 2' in page
    assert "aami_agent_polls_failed_total 0" in page and page.count("aami_agent_info") == 3
    assert "aami_agent_" not in (tmp_path / "sneaky.prom").read_text()


HISTOGRAM = """# HELP job_seconds How long the job took.
# TYPE job_seconds histogram
job_seconds_bucket{le="1"} 2
job_seconds_bucket{le="+Inf"} 3
job_seconds_sum 4.5
job_seconds_count 3
# HELP jobs_total Jobs done.
# TYPE jobs_total counter
jobs_total 3
"""


def test_help_and_type_are_kept_per_family() -> None:
    samples = parse_script_metrics(HISTOGRAM)
    assert samples is not None
    assert {s.family_name for s in samples} == {"job_seconds", "jobs_total"}
    assert {s.type for s in samples if s.family_name == "job_seconds"} == {"histogram"}
    text = render_samples(samples)
    assert text.count("# TYPE job_seconds histogram") == 1
    assert "# HELP job_seconds How long the job took." in text
    assert "# TYPE jobs_total counter" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["job_seconds"].type == "histogram"
    assert families["jobs"].type == "counter"  # prometheus_client drops _total


def test_series_of_another_script_and_type_conflicts_are_refused(tmp_path: Path) -> None:
    m = AgentMetrics()
    record_script_output(m, "first", "# TYPE temp_c gauge\ntemp_c{gpu=\"0\"} 40\n",
                         str(tmp_path))
    kept = record_script_output(
        m, "second", '# TYPE temp_c gauge\ntemp_c{gpu="0"} 99\ntemp_c{gpu="1"} 41\n'
        "# TYPE jobs counter\njobs 1\n", str(tmp_path))
    assert [(s.name, s.labels) for s in kept or []] == [("temp_c", (("gpu", "1"),)),
                                                        ("jobs", ())]
    third = record_script_output(m, "third", "# TYPE jobs gauge\njobs 5\n", str(tmp_path))
    assert third is None
    assert m.script_samples_refused == {"duplicate": 1, "type_conflict": 1}
    page = render(m, "1.0")
    assert page.count('temp_c{gpu="0"}') == 1 and 'temp_c{gpu="0"} 40' in page
    # A script that runs again replaces its own series (no conflict with itself).
    again = record_script_output(m, "first", "# TYPE temp_c gauge\ntemp_c{gpu=\"0\"} 42\n",
                                 str(tmp_path))
    assert again is not None and 'temp_c{gpu="0"} 42' in render(m, "1.0")
    assert "99" not in (tmp_path / "second.prom").read_text()


def test_promtool_accepts_the_agent_page_and_its_textfiles(tmp_path: Path) -> None:
    """Debian's promtool (package prometheus, scripts/install-system-deps.sh): the
    exposition Prometheus and node_exporter will read, checked by their own tool."""
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is not installed (apt-get install prometheus)")
    assert promtool is not None
    m = AgentMetrics()
    m.observe_poll(0.2, True)
    m.count_refusal("hash_mismatch")
    m.count_loop_restart("poll")
    record_script_output(m, "jobs", HISTOGRAM, str(tmp_path))
    record_script_output(m, "json", '{"metrics": [{"name": "ratio", "value": 0.5, '
                         '"type": "gauge", "help": "A ratio."}]}', str(tmp_path))
    for text in (render(m, "1.0"), (tmp_path / "jobs.prom").read_text(),
                 (tmp_path / "json.prom").read_text()):
        result = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                capture_output=True, timeout=30)
        assert result.returncode == 0, (result.stdout, result.stderr, text)
        assert result.stdout.strip() == result.stderr.strip() == "", (result, text)
