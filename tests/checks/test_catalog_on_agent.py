"""The whole catalog on a real node: signed by `checks/build_catalog.py` with the site's
publisher key, published to a real `aami-server`, assigned by policy, run by the real
`aami-agent` daemon with the host's own tools (none of the GPU tools exist here, so
those checks report them missing), and every check's series read back from the agent's
`/metrics` and from its node_exporter textfile directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent.realserver import Site, site
from tests.checks.replay import CHECKS, Series, strict_parse
from tests.harness import BIN, free_port, http, require, wait_until

pytestmark = pytest.mark.slow

NAMES = sorted(p.parent.name for p in CHECKS.glob("*/manifest.json"))
# One series each check prints on any Linux host, tools or not.
EVIDENCE = {
    "gpu-health": "aami_gpu_tool_available", "gpu-xid": "aami_gpu_xid_tool_available",
    "nvlink": "aami_nvlink_tool_available", "infiniband": "aami_ib_source_available",
    "nvme-health": "aami_nvme_tool_available", "disk-smart": "aami_smart_tool_available",
    "parallel-fs": "aami_pfs_tool_available", "mounts": "aami_mount_present",
    "time-sync": "aami_timesync_tool_available", "version-drift": "aami_version_info",
}


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Site]:
    with site(tmp_path / "site") as the_site:
        yield the_site


def test_every_check_reaches_metrics_and_textfile(s: Site, tmp_path: Path) -> None:
    # Four checks are signed for root only; a node's agent runs as root to run them.
    require(os.geteuid() == 0, "the agent must run as root to run the root checks")
    assert sorted(EVIDENCE) == NAMES
    catalog = tmp_path / "catalog"
    # The agent runs as root here and has no aami-runner user to switch to: sign the
    # unprivileged checks for root too (the catalog's --runner-user).
    done = subprocess.run(
        [sys.executable, str(CHECKS / "build_catalog.py"), "--key", str(s.private_key),
         "--out", str(catalog), "--runner-user", "root", "--aami", str(BIN / "aami")],
        capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    for signed in sorted(catalog.glob("*.signed.json")):
        s.publish(signed)
    params = {"gpu-xid": {"state_dir": str(tmp_path / "xid-state")},
              "mounts": {"mounts": [{"path": "/"}, {"path": "/dev/shm", "writable": True}]}}
    s.apply(*[{"name": f"catalog-{name}", "script": name, "version": "latest",
               "scope": "global", "params": params.get(name, {}), "run_as": "root",
               "schedule": {"mode": "interval", "interval": "1h"}, "timeout": "60s"}
              for name in NAMES])
    port, textfiles = free_port(), tmp_path / "textfile"
    textfiles.mkdir()
    config = s.agent_config(tmp_path / "state", metrics=f"127.0.0.1:{port}")
    config.write_text(config.read_text().replace("textfile_dir: null",
                                                 f"textfile_dir: {textfiles}"))
    token = s.bootstrap_token()
    agent = subprocess.Popen(
        [str(BIN / "aami-agent"), "run", "--config", str(config), "--token", token],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "agent.log", "wb"),  # noqa: SIM115
        env={**os.environ})
    try:
        wait_until(lambda: len(list(textfiles.glob("*.prom"))) == len(NAMES), timeout=120,
                   what="a .prom file from every catalog check")
        page = http("GET", f"http://127.0.0.1:{port}/metrics").body.decode()
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    executions = s.server.api("GET", "/api/v1/executions?limit=500").json["data"]
    failed = [(e["script_name"], e["stderr"]) for e in executions if not e["success"]]
    assert not failed, json.dumps(failed, indent=1)
    printed = {e["script_name"]: e["stdout"] for e in executions}
    assert sorted(printed) == NAMES
    exposed = series_of(page)
    for name, metric in EVIDENCE.items():
        # What the check printed (held to the catalog's rules) is what the node exposes.
        wanted, _ = strict_parse(printed[name])
        assert any(n == metric for n, _ in wanted), f"{name}: no {metric}"
        assert series_of((textfiles / f"{name}.prom").read_text()) == wanted, name
        assert set(wanted.items()) <= set(exposed.items()), f"{name}: not all on /metrics"


def series_of(text: str) -> dict[Series, float]:
    """Every sample, by name and labels, through prometheus_client's parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_agent_keeps_help_and_type_of_catalog_series() -> None:
    from aami.agent.metrics import parse_script_metrics, render_samples

    printed = "# HELP aami_gpu_count GPUs nvidia-smi reports.\n# TYPE aami_gpu_count gauge\n" \
        "aami_gpu_count 8\n"
    samples = parse_script_metrics(printed)
    assert samples is not None
    rendered = render_samples(samples)
    assert "# HELP aami_gpu_count " in rendered and "# TYPE aami_gpu_count gauge" in rendered
