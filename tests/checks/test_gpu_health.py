"""gpu-health against recorded nvidia-smi query output (fixtures/gpu-health/SOURCE)."""

from __future__ import annotations

from pathlib import Path

from tests.checks.replay import FIXTURES, calls, run_check, stub

F = FIXTURES / "gpu-health"
DRIVER_FAILED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n\n"
)


def test_healthy_h100(tmp_path: Path) -> None:
    stub(tmp_path, "nvidia-smi", [{"match": ["--query-gpu="], "query_csv": F / "h100-idle.csv"}])
    run = run_check("gpu-health", {"expected_count": 1, "max_temperature_celsius": 85},
                    bin_dir=tmp_path)
    gpu = {"gpu": "0"}
    assert run.value("aami_gpu_tool_available") == 1
    assert run.value("aami_gpu_driver_responding") == 1
    assert run.value("aami_gpu_count") == 1 == run.value("aami_gpu_expected_count")
    assert run.value("aami_gpu_info", name="NVIDIA H100 80GB HBM3", driver_version="590.48.01",
                     pci_bus_id="00000000:00:09.0") == 1
    assert run.value("aami_gpu_persistence_mode_enabled", **gpu) == 1
    assert run.value("aami_gpu_temperature_celsius", **gpu) == 41
    assert run.value("aami_gpu_temperature_headroom_celsius", **gpu) == 46
    assert run.value("aami_gpu_power_draw_watts", **gpu) == 69.85
    assert run.value("aami_gpu_power_limit_watts", **gpu) == 700
    assert run.value("aami_gpu_ecc_enabled", **gpu) == 1
    for kind in ("corrected", "uncorrected"):
        for scope in ("volatile", "aggregate"):
            assert run.value("aami_gpu_ecc_errors", type=kind, scope=scope) == 0
    assert run.value("aami_gpu_remapped_rows_pending", **gpu) == 0
    assert run.value("aami_gpu_remapped_rows_failed", **gpu) == 0
    assert run.value("aami_gpu_temperature_over_limit", **gpu) == 0
    # Idle: only the gpu_idle reason is set (0x1).
    assert run.value("aami_gpu_clock_throttle_active", reason="gpu_idle") == 1
    assert run.value("aami_gpu_clock_throttle_active", reason="hw_thermal_slowdown") == 0
    # A retired-pages state of [N/A] (Hopper uses row remapping) is not a series.
    assert not run.has("aami_gpu_retired_pages_pending")
    # The current name was asked for, so the pre-535 name was not.
    assert not any("clocks_throttle_reasons.active" in " ".join(c) for c in calls(tmp_path))


def test_degraded_h100_ecc_remap_thermal(tmp_path: Path) -> None:
    stub(tmp_path, "nvidia-smi",
         [{"match": ["--query-gpu="], "query_csv": F / "h100-load-degraded.csv"}])
    run = run_check("gpu-health", {"max_temperature_celsius": 85}, bin_dir=tmp_path)
    assert run.value("aami_gpu_ecc_errors", type="uncorrected", scope="volatile") == 2
    assert run.value("aami_gpu_ecc_errors", type="corrected", scope="aggregate") == 117
    assert run.value("aami_gpu_remapped_rows_pending") == 1
    assert run.value("aami_gpu_remapped_rows_uncorrectable") == 1
    assert run.value("aami_gpu_clock_throttle_active", reason="hw_thermal_slowdown") == 1
    assert run.value("aami_gpu_temperature_over_limit") == 1
    assert run.value("aami_gpu_temperature_headroom_celsius") == -3
    assert run.value("aami_gpu_persistence_mode_enabled") == 0
    assert run.value("aami_gpu_power_draw_watts") == 631.95


def test_degraded_consumer_gpu_without_ecc(tmp_path: Path) -> None:
    stub(tmp_path, "nvidia-smi",
         [{"match": ["--query-gpu="], "query_csv": F / "rtx2080super-idle.csv"}])
    run = run_check("gpu-health", {"expected_count": 2}, bin_dir=tmp_path)
    assert run.value("aami_gpu_count") == 1
    assert run.value("aami_gpu_expected_count") == 2
    assert run.value("aami_gpu_ecc_enabled") == 0
    assert not run.has("aami_gpu_ecc_errors")  # [N/A]: not measured, not zero
    assert not run.has("aami_gpu_remapped_rows_pending")
    assert not run.has("aami_gpu_temperature_headroom_celsius")
    assert run.value("aami_gpu_persistence_mode_enabled") == 0
    assert run.value("aami_gpu_clock_throttle_active", reason="sw_power_cap") == 1


def test_older_driver_uses_the_throttle_field_name(tmp_path: Path) -> None:
    # A recording whose header names clocks_throttle_reasons.active (pre-535 name):
    # the stand-in refuses the new name exactly as such a driver does.
    old = tmp_path / "old.csv"
    text = (F / "h100-idle.csv").read_text()
    old.write_text(text.replace("clocks_event_reasons.active", "clocks_throttle_reasons.active"))
    stub(tmp_path / "bin", "nvidia-smi", [{"match": ["--query-gpu="], "query_csv": old}])
    run = run_check("gpu-health", bin_dir=tmp_path / "bin")
    assert run.value("aami_gpu_clock_throttle_active", reason="gpu_idle") == 1
    assert run.value("aami_gpu_temperature_celsius") == 41


def test_broken_driver_not_loaded(tmp_path: Path) -> None:
    stub(tmp_path, "nvidia-smi", [{"stdout": DRIVER_FAILED, "exit": 9}])
    run = run_check("gpu-health", {"expected_count": 8}, bin_dir=tmp_path)
    assert run.value("aami_gpu_tool_available") == 1
    assert run.value("aami_gpu_driver_responding") == 0
    assert run.value("aami_gpu_count") == 0
    assert "couldn't communicate with the NVIDIA driver" in run.stderr


def test_tool_missing(tmp_path: Path) -> None:
    run = run_check("gpu-health", {"expected_count": 8}, bin_dir=tmp_path)
    assert run.value("aami_gpu_tool_available") == 0
    assert run.value("aami_gpu_expected_count") == 8
    assert run.names() == {"aami_gpu_tool_available", "aami_gpu_expected_count"}


def test_bad_parameters_fail_with_one_line(tmp_path: Path) -> None:
    run = run_check("gpu-health", bin_dir=tmp_path, env={"AAMI_PARAMS": "[1]"},
                    expect_metrics=False)
    assert run.returncode != 0
    assert run.stderr.strip() == "parameters: must be a JSON object"


def test_parameters_only_on_stdin(tmp_path: Path) -> None:
    stub(tmp_path, "nvidia-smi", [{"match": ["--query-gpu="], "query_csv": F / "h100-idle.csv"}])
    run = run_check("gpu-health", {"expected_count": 4, "max_temperature_celsius": 40},
                    bin_dir=tmp_path, stdin_only=True)
    assert run.value("aami_gpu_expected_count") == 4
    assert run.value("aami_gpu_temperature_over_limit") == 1  # 41 > 40
