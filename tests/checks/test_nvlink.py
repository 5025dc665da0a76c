"""nvlink against recorded `nvidia-smi nvlink -s / -e` output (fixtures/nvlink/SOURCE)."""

from __future__ import annotations

from pathlib import Path

from tests.checks.replay import FIXTURES, run_check, stub
from tests.checks.test_gpu_health import DRIVER_FAILED

F = FIXTURES / "nvlink"


def smi(bin_dir: Path, status: str, errors: str) -> None:
    stub(bin_dir, "nvidia-smi", [{"match": ["nvlink", "-s"], "stdout_file": F / status},
                                 {"match": ["nvlink", "-e"], "stdout_file": F / errors}])


def test_healthy_h100_18_links(tmp_path: Path) -> None:
    smi(tmp_path, "h100-status.txt", "h100-errors.txt")
    run = run_check("nvlink", {"expected_links_per_gpu": 18}, bin_dir=tmp_path)
    assert run.value("aami_nvlink_tool_available") == 1
    assert run.value("aami_nvlink_driver_responding") == 1
    assert run.value("aami_nvlink_links_active", gpu="0") == 18
    assert run.value("aami_nvlink_links_expected", gpu="0") == 18
    assert run.value("aami_nvlink_link_active", link="17") == 1
    assert run.value("aami_nvlink_link_speed_bytes_per_second", link="0") == 26.562e9
    assert run.value("aami_nvlink_errors_total", link="5", counter="crc_errors") == 0
    errors = [k for k in run.series if k[0] == "aami_nvlink_errors_total"]
    assert len(errors) == 18 * 3
    assert run.types["aami_nvlink_errors_total"] == "counter"


def test_degraded_links_down_and_errors(tmp_path: Path) -> None:
    smi(tmp_path, "h100-status-two-inactive.txt", "h100-errors-link3.txt")
    run = run_check("nvlink", {"expected_links_per_gpu": 18}, bin_dir=tmp_path)
    assert run.value("aami_nvlink_links_active", gpu="0") == 16
    assert run.value("aami_nvlink_link_active", link="3") == 0
    assert run.value("aami_nvlink_link_active", link="11") == 0
    assert not run.has("aami_nvlink_link_speed_bytes_per_second", link="3")
    assert run.value("aami_nvlink_errors_total", link="3", counter="replay_errors") == 142
    assert run.value("aami_nvlink_errors_total", link="3", counter="recovery_errors") == 3
    assert run.value("aami_nvlink_errors_total", link="3", counter="crc_errors") == 891


def test_degraded_no_links_at_all(tmp_path: Path) -> None:
    smi(tmp_path, "rtx2080super-status.txt", "rtx2080super-status.txt")
    run = run_check("nvlink", {"expected_links_per_gpu": 4}, bin_dir=tmp_path)
    assert run.value("aami_nvlink_links_active", gpu="0") == 0
    assert run.value("aami_nvlink_links_expected", gpu="0") == 4
    assert not run.has("aami_nvlink_errors_total")


def test_broken_driver_not_loaded(tmp_path: Path) -> None:
    stub(tmp_path, "nvidia-smi", [{"stdout": DRIVER_FAILED, "exit": 9}])
    run = run_check("nvlink", bin_dir=tmp_path)
    assert run.value("aami_nvlink_driver_responding") == 0
    assert not run.has("aami_nvlink_links_active")
    assert "couldn't communicate" in run.stderr


def test_tool_missing(tmp_path: Path) -> None:
    run = run_check("nvlink", bin_dir=tmp_path)
    assert run.names() == {"aami_nvlink_tool_available"}
    assert run.value("aami_nvlink_tool_available") == 0
