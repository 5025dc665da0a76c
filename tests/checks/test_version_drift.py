"""version-drift against a recorded node's versions and the live kernel
(fixtures/version-drift/SOURCE)."""

from __future__ import annotations

import platform
from pathlib import Path

from tests.checks.replay import FIXTURES, run_check

NODE = FIXTURES / "version-drift" / "h100"
ROOTS = {"proc_root": str(NODE / "proc"), "sysfs_root": str(NODE / "sys")}


def test_healthy_versions_as_expected(tmp_path: Path) -> None:
    run = run_check("version-drift", {**ROOTS, "expected": [
        {"component": "kernel", "version": "5.15.0-185-*"},
        {"component": "nvidia", "version": "590.48.01"}]}, bin_dir=tmp_path)
    assert run.value("aami_version_info", component="kernel",
                     version="5.15.0-185-generic") == 1
    assert run.value("aami_version_info", component="nvidia", version="590.48.01") == 1
    assert run.value("aami_version_matches_expected", component="kernel") == 1
    assert run.value("aami_version_matches_expected", component="nvidia",
                     expected="590.48.01") == 1
    assert run.value("aami_version_mismatches") == 0
    assert run.value("aami_version_present", component="mlx5_core") == 0  # inbox driver


def test_degraded_driver_drifted(tmp_path: Path) -> None:
    run = run_check("version-drift", {**ROOTS, "expected": [
        {"component": "kernel", "version": "5.15.0-185-generic"},
        {"component": "nvidia", "version": "550.54.*"}]}, bin_dir=tmp_path)
    assert run.value("aami_version_matches_expected", component="nvidia") == 0
    assert run.value("aami_version_matches_expected", component="kernel") == 1
    assert run.value("aami_version_mismatches") == 1


def test_broken_expected_module_not_loaded(tmp_path: Path) -> None:
    run = run_check("version-drift", {**ROOTS, "modules": [], "expected": [
        {"component": "lustre", "version": "2.15.*"}]}, bin_dir=tmp_path)
    assert run.value("aami_version_present", component="lustre") == 0
    assert run.value("aami_version_matches_expected", component="lustre") == 0
    assert run.value("aami_version_mismatches") == 1
    assert not run.has("aami_version_present", component="nvidia")


def test_live_kernel(tmp_path: Path) -> None:
    run = run_check("version-drift", {"expected": [
        {"component": "kernel", "version": platform.release()}]}, bin_dir=tmp_path)
    assert run.value("aami_version_info", component="kernel", version=platform.release()) == 1
    assert run.value("aami_version_mismatches") == 0


def test_cannot_read_the_kernel_release(tmp_path: Path) -> None:
    run = run_check("version-drift", {"proc_root": str(tmp_path / "noproc")}, bin_dir=tmp_path,
                    expect_metrics=False)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"cannot read the kernel release from {tmp_path}/noproc/sys/kernel/osrelease")
