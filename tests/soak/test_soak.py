"""The short soak in the suite: about 10 real agent daemons for 4.5 minutes against a
real server (two processes, TLS, PostgreSQL), with a server SIGKILL and a hostile
window, so `make test` covers the daemons over time and not one cycle at a time.

Memory and CPU are figures for `make soak` to judge (a benchmark's job, not a test's);
every correctness target is asserted here: compliance and poll success outside the
fault windows, nothing lost or doubled, no loop restart, every agent back in time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import _require_postgres
from tests.soak.report import print_table
from tests.soak.run import SHORT, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_short_soak_meets_every_correctness_target(tmp_path: Path) -> None:
    _require_postgres()
    report = run_soak(replace(SHORT, work=tmp_path / "soak"))
    print_table(report)
    assert report.heartbeat_gaps > 0 and report.polls > 0, "nothing judged"
    assert report.runs_logged > 0
    assert report.missed(ignore=("agent RSS median (MB)", "agent RSS max (MB)",
                                 "agent CPU mean (%)")) == []
