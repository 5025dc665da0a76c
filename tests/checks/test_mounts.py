"""mounts against the live mount table and a recorded one (fixtures/mounts/SOURCE)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.checks.replay import FIXTURES, run_check

RECORDED = FIXTURES / "mounts" / "proc"


def test_healthy_required_mounts_present_and_writable(tmp_path: Path) -> None:
    run = run_check("mounts", {"mounts": [
        {"path": "/dev/shm", "writable": True, "fstype": "tmpfs"},
        {"path": "/proc", "fstype": "proc"}]}, bin_dir=tmp_path)
    shm = {"mount": "/dev/shm"}
    assert run.value("aami_mount_present", **shm) == 1
    assert run.value("aami_mount_info", **shm, fstype="tmpfs") == 1
    assert run.value("aami_mount_fstype_matches", **shm) == 1
    assert run.value("aami_mount_writable", **shm) == 1
    assert run.value("aami_mount_probe_timed_out", **shm) == 0
    assert 0 <= run.value("aami_mount_probe_seconds", **shm) < 10
    assert run.value("aami_mount_present", mount="/proc") == 1
    assert not run.has("aami_mount_writable", mount="/proc")  # not asked for
    assert not list(Path("/dev/shm").glob(".aami-probe-*"))  # the probe cleans up


def test_degraded_mount_not_writable(tmp_path: Path) -> None:
    run = run_check("mounts", {"mounts": [{"path": "/sys/", "writable": True}]},
                    bin_dir=tmp_path)
    assert run.value("aami_mount_present", mount="/sys") == 1
    assert run.value("aami_mount_writable", mount="/sys") == 0
    assert run.value("aami_mount_probe_timed_out", mount="/sys") == 0


def test_broken_required_mount_missing(tmp_path: Path) -> None:
    run = run_check("mounts", {"mounts": [
        {"path": "/lustre/scratch", "writable": True, "fstype": "lustre"},
        {"path": "/usr"}]}, bin_dir=tmp_path)
    assert run.value("aami_mount_present", mount="/lustre/scratch") == 0
    assert run.value("aami_mount_fstype_matches", mount="/lustre/scratch") == 0
    assert not run.has("aami_mount_writable", mount="/lustre/scratch")
    assert run.value("aami_mount_present", mount="/usr") == 0  # a directory, not a mount


def test_recorded_table_and_a_read_only_remount(tmp_path: Path) -> None:
    run = run_check("mounts", {"proc_root": str(RECORDED), "mounts": [
        {"path": "/", "fstype": "ext4"}]}, bin_dir=tmp_path)
    assert run.value("aami_mount_read_only", mount="/") == 0
    assert run.value("aami_mount_fstype_matches", mount="/") == 1
    proc = tmp_path / "proc"
    shutil.copytree(RECORDED, proc)
    table = proc / "self" / "mounts"
    table.write_text(table.read_text().replace("/dev/vda / ext4 rw,", "/dev/vda / ext4 ro,"))
    run = run_check("mounts", {"proc_root": str(proc), "mounts": [{"path": "/"}]},
                    bin_dir=tmp_path / "bin")
    assert run.value("aami_mount_read_only", mount="/") == 1


def test_no_mount_table_cannot_run(tmp_path: Path) -> None:
    run = run_check("mounts", {"proc_root": str(tmp_path / "noproc"), "mounts": [{"path": "/"}]},
                    bin_dir=tmp_path, expect_metrics=False)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("cannot read the mount table ")
