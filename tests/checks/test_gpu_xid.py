"""gpu-xid against recorded kernel logs (fixtures/gpu-xid/SOURCE)."""

from __future__ import annotations

from pathlib import Path

from tests.checks.replay import FIXTURES, run_check, stub

F = FIXTURES / "gpu-xid"
NO_JOURNAL = {"stdout": "-- No entries --\n", "stderr": "No journal files were found.\n"}


def params(tmp_path: Path, **extra: object) -> dict:
    proc = tmp_path / "proc" / "sys" / "kernel" / "random"
    proc.mkdir(parents=True, exist_ok=True)
    if not (proc / "boot_id").exists():
        (proc / "boot_id").write_text("6c1d5ad8-2b0a-4d8e-9b7c-1f0e2d3c4b5a\n")
    return {"state_dir": str(tmp_path / "state"), "proc_root": str(tmp_path / "proc"), **extra}


def journal(bin_dir: Path, fixture: str) -> None:
    stub(bin_dir, "journalctl", [{"match": ["-k", "short-iso-precise"],
                                  "stdout_file": F / fixture}])


def test_healthy_boot_without_xids_via_dmesg(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "journalctl", [NO_JOURNAL])  # no journald: falls back to the ring buffer
    stub(bin_dir, "dmesg", [{"match": ["--time-format iso"],
                             "stdout_file": F / "dmesg-healthy.txt"}])
    run = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir)
    assert run.value("aami_gpu_xid_tool_available") == 1
    assert run.value("aami_gpu_xid_new_events") == 0
    assert run.value("aami_gpu_xid_critical_new_events") == 0
    assert not run.has("aami_gpu_xid_events_boot")
    assert run.value("aami_gpu_xid_state_saved") == 1


def test_xid79_is_new_once_then_seen(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    journal(bin_dir, "journal-xid79.txt")
    first = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir)
    labels = {"pci_bus_id": "0000:01:00", "xid": "79"}
    assert first.value("aami_gpu_xid_first_run") == 1
    assert first.value("aami_gpu_xid_events_boot", **labels) == 1
    assert first.value("aami_gpu_xid_events_new", **labels) == 1
    assert first.value("aami_gpu_xid_events_new", xid="154") == 1
    assert first.value("aami_gpu_xid_critical_new_events") == 2
    assert first.value("aami_gpu_xid_last_event_timestamp_seconds") == 1780318506.21853

    second = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir)
    assert second.value("aami_gpu_xid_first_run") == 0
    assert second.value("aami_gpu_xid_events_boot", **labels) == 1
    assert second.value("aami_gpu_xid_events_new", **labels) == 0
    assert second.value("aami_gpu_xid_new_events") == 0

    journal(bin_dir, "journal-xid79-later.txt")
    third = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir)
    assert third.value("aami_gpu_xid_events_boot", **labels) == 2
    assert third.value("aami_gpu_xid_events_new", **labels) == 1
    assert third.value("aami_gpu_xid_new_events") == 2


def test_a_reboot_starts_over(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    journal(bin_dir, "journal-xid79.txt")
    run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir)
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("another-boot\n")
    run = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir)
    assert run.value("aami_gpu_xid_first_run") == 1
    assert run.value("aami_gpu_xid_new_events") == 2


def test_critical_list_is_a_parameter(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    journal(bin_dir, "journal-xid79.txt")
    run = run_check("gpu-xid", params(tmp_path, critical_xids=[48]), bin_dir=bin_dir)
    assert run.value("aami_gpu_xid_new_events") == 2
    assert run.value("aami_gpu_xid_critical_new_events") == 0


def test_unwritable_state_is_a_metric_not_a_failure(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    journal(bin_dir, "journal-xid79.txt")
    (tmp_path / "file").write_text("")
    run = run_check("gpu-xid", {**params(tmp_path), "state_dir": str(tmp_path / "file/x")},
                    bin_dir=bin_dir)
    assert run.value("aami_gpu_xid_state_saved") == 0
    assert run.value("aami_gpu_xid_new_events") == 2


def test_broken_no_permission_to_read_the_log(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "journalctl", [NO_JOURNAL])
    stub(bin_dir, "dmesg", [{"stderr": "dmesg: read kernel buffer failed: Operation not "
                                       "permitted\n", "exit": 1}])
    run = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir, expect_metrics=False)
    assert run.returncode == 1
    assert run.stderr.strip() == ("cannot read the kernel log with dmesg: dmesg: read kernel "
                                  "buffer failed: Operation not permitted")


def test_broken_journal_hides_the_kernel_from_this_user(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "journalctl", [{"stdout": "-- No entries --\n", "stderr": (
        "Hint: You are currently not seeing messages from other users and the system.\n"
        "      Users in groups 'adm', 'systemd-journal' can see all messages.\n"
        "      Pass -q to turn off this notice.\n")}])
    run = run_check("gpu-xid", params(tmp_path), bin_dir=bin_dir, expect_metrics=False)
    assert run.returncode == 1
    assert "cannot read the kernel log with journalctl" in run.stderr


def test_tool_missing(tmp_path: Path) -> None:
    run = run_check("gpu-xid", params(tmp_path), bin_dir=tmp_path / "empty")
    assert run.value("aami_gpu_xid_tool_available") == 0
    assert run.names() == {"aami_gpu_xid_tool_available"}
