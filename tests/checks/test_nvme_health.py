"""nvme-health against recorded `nvme smart-log -o json` (fixtures/nvme-health/SOURCE)."""

from __future__ import annotations

from pathlib import Path

from tests.checks.replay import FIXTURES, calls, run_check, stub

F = FIXTURES / "nvme-health"


def sysfs(tmp_path: Path, **states: str) -> str:
    for name, state in states.items():
        folder = tmp_path / "sys" / "class" / "nvme" / name
        folder.mkdir(parents=True)
        (folder / "state").write_text(state + "\n")
    return str(tmp_path / "sys")


def test_healthy_both_nvme_cli_formats(tmp_path: Path) -> None:
    root = sysfs(tmp_path, nvme0="live", nvme1="live")
    stub(tmp_path / "bin", "nvme", [
        {"match": ["smart-log", "/dev/nvme0 "], "stdout_file": F / "smart-log-cli1.json"},
        {"match": ["smart-log", "/dev/nvme1 "], "stdout_file": F / "smart-log-cli2.json"}])
    run = run_check("nvme-health", {"sysfs_root": root, "max_percentage_used": 90},
                    bin_dir=tmp_path / "bin")
    assert run.value("aami_nvme_tool_available") == 1
    assert run.value("aami_nvme_controllers") == 2
    for device in ("nvme0", "nvme1"):
        assert run.value("aami_nvme_controller_live", device=device) == 1
        assert run.value("aami_nvme_smart_log_ok", device=device) == 1
        assert run.value("aami_nvme_critical_warning", device=device) == 0
        assert run.value("aami_nvme_media_errors_total", device=device) == 0
        assert run.value("aami_nvme_wear_over_limit", device=device) == 0
    assert run.value("aami_nvme_temperature_celsius", device="nvme0") == 36.85
    assert run.value("aami_nvme_temperature_celsius", device="nvme1") == 22.85
    assert run.value("aami_nvme_power_on_seconds_total", device="nvme0") == 6282 * 3600
    assert run.value("aami_nvme_unsafe_shutdowns_total", device="nvme1") == 24
    assert ["nvme", "smart-log", "/dev/nvme1", "-o", "json"] in calls(tmp_path / "bin")


def test_degraded_worn_drive(tmp_path: Path) -> None:
    root = sysfs(tmp_path, nvme0="live")
    stub(tmp_path / "bin", "nvme", [{"stdout_file": F / "smart-log-cli2-worn.json"}])
    run = run_check("nvme-health", {"sysfs_root": root, "max_percentage_used": 90},
                    bin_dir=tmp_path / "bin")
    assert run.value("aami_nvme_critical_warning") == 5
    assert run.value("aami_nvme_critical_warning_active", warning="available_spare") == 1
    assert run.value("aami_nvme_critical_warning_active", warning="reliability_degraded") == 1
    assert run.value("aami_nvme_critical_warning_active", warning="read_only") == 0
    assert run.value("aami_nvme_available_spare_percent") == 4
    assert run.value("aami_nvme_percentage_used_percent") == 103
    assert run.value("aami_nvme_media_errors_total") == 12
    assert run.value("aami_nvme_wear_over_limit") == 1


def test_broken_controller_resetting_and_log_unreadable(tmp_path: Path) -> None:
    root = sysfs(tmp_path, nvme0="live", nvme1="resetting")
    stub(tmp_path / "bin", "nvme", [
        {"match": ["/dev/nvme0 "], "stdout_file": F / "smart-log-cli2.json"},
        # Only the exit status matters to the check; the text is illustrative.
        {"match": ["/dev/nvme1 "], "stderr": "smart log: Resource temporarily unavailable\n",
         "exit": 1}])
    run = run_check("nvme-health", {"sysfs_root": root}, bin_dir=tmp_path / "bin")
    assert run.value("aami_nvme_controller_live", device="nvme1") == 0
    assert run.value("aami_nvme_smart_log_ok", device="nvme1") == 0
    assert run.value("aami_nvme_smart_log_ok", device="nvme0") == 1
    assert not run.has("aami_nvme_critical_warning", device="nvme1")
    assert "nvme smart-log /dev/nvme1" in run.stderr


def test_tool_missing_still_counts_controllers(tmp_path: Path) -> None:
    root = sysfs(tmp_path, nvme0="live")
    run = run_check("nvme-health", {"sysfs_root": root}, bin_dir=tmp_path / "bin")
    assert run.value("aami_nvme_tool_available") == 0
    assert run.value("aami_nvme_controllers") == 1
    assert run.value("aami_nvme_controller_live", device="nvme0") == 1
    assert not run.has("aami_nvme_smart_log_ok")
