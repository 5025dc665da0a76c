"""time-sync against recorded chronyc / timedatectl output (fixtures/time-sync/SOURCE)."""

from __future__ import annotations

from pathlib import Path

from tests.checks.replay import FIXTURES, run_check, stub

F = FIXTURES / "time-sync"


def timedatectl(bin_dir: Path, synchronized: str, status: str) -> None:
    stub(bin_dir, "timedatectl", [
        {"match": ["show", "NTPSynchronized"], "stdout": synchronized + "\n"},
        {"match": ["timesync-status"], "stdout_file": F / status}])


def test_healthy_chrony(tmp_path: Path) -> None:
    stub(tmp_path, "chronyc", [{"match": ["tracking"],
                                "stdout_file": F / "chronyc-tracking-synced.txt"}])
    run = run_check("time-sync", {"max_offset_seconds": 0.05}, bin_dir=tmp_path)
    chrony = {"daemon": "chrony"}
    assert run.value("aami_timesync_tool_available", tool="chronyc") == 1
    assert run.value("aami_timesync_daemon_responding", **chrony) == 1
    assert run.value("aami_timesync_synchronized", **chrony) == 1
    assert run.value("aami_timesync_offset_seconds", **chrony) == -0.000001501  # slow
    assert run.value("aami_timesync_offset_over_limit", **chrony) == 0
    assert run.value("aami_timesync_offset_limit_seconds", **chrony) == 0.05
    assert run.value("aami_timesync_stratum", **chrony) == 3


def test_degraded_chrony_not_synchronised(tmp_path: Path) -> None:
    stub(tmp_path, "chronyc", [{"stdout_file": F / "chronyc-tracking-unsynchronised.txt"}])
    run = run_check("time-sync", bin_dir=tmp_path)
    assert run.value("aami_timesync_synchronized") == 0
    assert run.value("aami_timesync_stratum") == 0


def test_broken_chronyd_not_running(tmp_path: Path) -> None:
    stub(tmp_path, "chronyc", [{"stdout": "506 Cannot talk to daemon\n", "exit": 1}])
    stub(tmp_path, "timedatectl", [{"stdout": "yes\n"}])  # chrony wins where installed
    run = run_check("time-sync", bin_dir=tmp_path)
    assert run.value("aami_timesync_daemon_responding", daemon="chrony") == 0
    assert not run.has("aami_timesync_synchronized")
    assert "506 Cannot talk to daemon" in run.stderr


def test_healthy_timesyncd(tmp_path: Path) -> None:
    timedatectl(tmp_path, "yes", "timesync-status-synced.txt")
    run = run_check("time-sync", {"max_offset_seconds": 0.05}, bin_dir=tmp_path)
    timesyncd = {"daemon": "timesyncd"}
    assert run.value("aami_timesync_tool_available", tool="chronyc") == 0
    assert run.value("aami_timesync_synchronized", **timesyncd) == 1
    assert run.value("aami_timesync_offset_seconds", **timesyncd) == -0.005086
    assert run.value("aami_timesync_offset_over_limit", **timesyncd) == 0
    assert run.value("aami_timesync_stratum", **timesyncd) == 2


def test_degraded_timesyncd_offset_over_limit(tmp_path: Path) -> None:
    timedatectl(tmp_path, "no", "timesync-status-first-sync.txt")
    run = run_check("time-sync", bin_dir=tmp_path)
    assert run.value("aami_timesync_synchronized") == 0
    assert run.value("aami_timesync_offset_seconds") == 7.493693
    assert run.value("aami_timesync_offset_over_limit") == 1


def test_tool_missing(tmp_path: Path) -> None:
    run = run_check("time-sync", bin_dir=tmp_path)
    assert run.names() == {"aami_timesync_tool_available"}
    assert run.value("aami_timesync_tool_available", tool="timedatectl") == 0
