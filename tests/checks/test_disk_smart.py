"""disk-smart against recorded `smartctl -j -a` output (fixtures/disk-smart/SOURCE)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.checks.replay import FIXTURES, calls, run_check, stub

F = FIXTURES / "disk-smart"
WDC, SEAGATE = F / "WDC_WD20EFRX-68EUZN0_17.json", F / "ST3500418AS_12.json"
MICRON = F / "nvme-null-Micron_7450_MTFDKCC3T2TFS-nvme1.json"
SAMSUNG = F / "nvme-null-SAMSUNG_MZWLL3T2HAJQ-00005-nvme0.json"


def scan(*devices: tuple[str, str, str]) -> dict:
    listed = [{"name": n, "info_name": n, "type": t, "protocol": p} for n, t, p in devices]
    return {"match": ["--scan"], "stdout": json.dumps({"json_format_version": [1, 0],
                                                       "devices": listed})}


def answer(device: str, recording: Path) -> dict:
    status = json.loads(recording.read_text())["smartctl"]["exit_status"]
    return {"match": ["-a", device], "stdout_file": recording, "exit": status}


def test_healthy_sata_and_nvme(tmp_path: Path) -> None:
    stub(tmp_path, "smartctl", [scan(("/dev/sda", "sat", "ATA"), ("/dev/nvme1", "nvme", "NVMe")),
                                answer("/dev/sda", WDC), answer("/dev/nvme1", MICRON)])
    run = run_check("disk-smart", bin_dir=tmp_path)
    assert run.value("aami_smart_tool_available") == 1
    assert run.value("aami_smart_devices") == 2
    sda, nvme = {"device": "/dev/sda"}, {"device": "/dev/nvme1"}
    assert run.value("aami_smart_device_readable", **sda) == 1
    assert run.value("aami_smart_health_passed", **sda) == 1
    assert run.value("aami_smart_exit_status", **sda) == 0
    assert run.value("aami_smart_reallocated_sectors", **sda) == 0
    assert run.value("aami_smart_pending_sectors", **sda) == 0
    assert run.value("aami_smart_info", **sda, model="WDC WD20EFRX-68EUZN0") == 1
    assert run.value("aami_smart_health_passed", **nvme) == 1
    assert run.value("aami_smart_nvme_critical_warning", **nvme) == 0
    assert run.value("aami_smart_nvme_available_spare_percent", **nvme) == 100
    assert not run.has("aami_smart_reallocated_sectors", **nvme)
    assert ["smartctl", "-j", "-a", "-d", "sat", "/dev/sda"] in calls(tmp_path)


def test_degraded_reallocated_sectors(tmp_path: Path) -> None:
    stub(tmp_path, "smartctl", [scan(("/dev/sda", "sat", "ATA")), answer("/dev/sda", SEAGATE)])
    run = run_check("disk-smart", bin_dir=tmp_path)
    assert run.value("aami_smart_health_passed") == 1
    assert run.value("aami_smart_reallocated_sectors") == 304
    assert run.value("aami_smart_power_on_seconds") == 44668 * 3600


def test_broken_nvme_failing_and_a_disk_that_cannot_be_opened(tmp_path: Path) -> None:
    stub(tmp_path, "smartctl", [
        scan(("/dev/nvme0", "nvme", "NVMe"), ("/dev/sdb", "sat", "ATA")),
        answer("/dev/nvme0", SAMSUNG),
        {"match": ["-a", "/dev/sdb"], "exit": 2,
         "stdout": json.dumps({"smartctl": {"exit_status": 2}})}])
    run = run_check("disk-smart", bin_dir=tmp_path)
    assert run.value("aami_smart_health_passed", device="/dev/nvme0") == 0
    assert run.value("aami_smart_exit_status", device="/dev/nvme0") == 8
    assert run.value("aami_smart_nvme_critical_warning", device="/dev/nvme0") == 16
    assert run.value("aami_smart_device_readable", device="/dev/sdb") == 0
    assert run.value("aami_smart_exit_status", device="/dev/sdb") == 2
    assert not run.has("aami_smart_health_passed", device="/dev/sdb")


def test_devices_parameter_skips_the_scan(tmp_path: Path) -> None:
    stub(tmp_path, "smartctl", [answer("/dev/sda", WDC)])
    run = run_check("disk-smart", {"devices": ["/dev/sda"]}, bin_dir=tmp_path)
    assert run.value("aami_smart_devices") == 1
    assert calls(tmp_path) == [["smartctl", "-j", "-a", "/dev/sda"]]


def test_tool_missing(tmp_path: Path) -> None:
    run = run_check("disk-smart", bin_dir=tmp_path)
    assert run.names() == {"aami_smart_tool_available"}
    assert run.value("aami_smart_tool_available") == 0
