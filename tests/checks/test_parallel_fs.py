"""parallel-fs against recorded lfs / beegfs-check-servers / mmhealth output
(fixtures/parallel-fs/SOURCE)."""

from __future__ import annotations

from pathlib import Path

from tests.checks.replay import FIXTURES, calls, run_check, stub

F = FIXTURES / "parallel-fs"


def test_healthy_lustre_and_beegfs(tmp_path: Path) -> None:
    stub(tmp_path, "lfs", [{"match": ["check servers"],
                            "stdout_file": F / "lfs-check-servers-healthy.txt"}])
    stub(tmp_path, "beegfs-check-servers",
         [{"stdout_file": F / "beegfs-check-servers-healthy.txt"}])
    run = run_check("parallel-fs", {"gpfs_bin_dir": str(tmp_path / "nogpfs")}, bin_dir=tmp_path)
    assert run.value("aami_pfs_tool_available", fs="lustre") == 1
    assert run.value("aami_pfs_tool_available", fs="beegfs") == 1
    assert run.value("aami_pfs_tool_available", fs="gpfs") == 0
    assert run.value("aami_pfs_check_completed", fs="lustre") == 1
    assert run.value("aami_pfs_lustre_targets_down") == 0
    assert run.value("aami_pfs_lustre_target_up",
                     target="lustrefs-MDT0000-mdc-ffff88003bfbd000", kind="mdt",
                     fsname="lustrefs") == 1
    assert len([k for k in run.series if k[0] == "aami_pfs_lustre_target_up"]) == 7
    assert run.value("aami_pfs_beegfs_servers_unreachable") == 0
    assert run.value("aami_pfs_beegfs_server_reachable", role="management",
                     node="bee-meta1") == 1
    assert run.value("aami_pfs_beegfs_server_reachable", role="storage", node_id="4") == 1
    assert not run.has("aami_pfs_gpfs_components_unhealthy")


def test_degraded_lustre_targets_and_beegfs_server_down(tmp_path: Path) -> None:
    stub(tmp_path, "lfs", [{"stdout_file": F / "lfs-check-servers-degraded.stdout",
                            "stderr": (F / "lfs-check-servers-degraded.stderr").read_text(),
                            "exit": 1}])
    stub(tmp_path, "beegfs-check-servers",
         [{"stdout_file": F / "beegfs-check-servers-one-down.txt"}])
    run = run_check("parallel-fs", {"filesystems": ["lustre", "beegfs"]}, bin_dir=tmp_path)
    assert run.value("aami_pfs_lustre_targets_down") == 2
    assert run.value("aami_pfs_lustre_target_up",
                     target="lustrefs-OST0002-osc-ffff88003bfbd000") == 0
    assert run.value("aami_pfs_lustre_target_up",
                     target="lustrefs-OST0003-osc-ffff88003bfbd000") == 0
    assert run.value("aami_pfs_beegfs_servers_unreachable") == 1
    assert run.value("aami_pfs_beegfs_server_reachable", node="bee-store3") == 0
    assert not run.has("aami_pfs_tool_available", fs="gpfs")


def test_gpfs_healthy_from_its_own_bin_dir(tmp_path: Path) -> None:
    gpfs_bin = tmp_path / "usr/lpp/mmfs/bin"
    stub(gpfs_bin, "mmhealth", [{"match": ["node show -Y"],
                                 "stdout_file": F / "mmhealth-healthy.txt"}])
    run = run_check("parallel-fs", {"filesystems": ["gpfs"], "gpfs_bin_dir": str(gpfs_bin)},
                    bin_dir=tmp_path / "bin")
    assert run.value("aami_pfs_tool_available", fs="gpfs") == 1
    assert run.value("aami_pfs_gpfs_components_unhealthy") == 0
    assert run.value("aami_pfs_gpfs_component_healthy", component="FILESYSTEM",
                     entity="scratch") == 1
    assert calls(gpfs_bin) == [["mmhealth", "node", "show", "-Y"]]


def test_gpfs_degraded_filesystem(tmp_path: Path) -> None:
    stub(tmp_path, "mmhealth", [{"stdout_file": F / "mmhealth-fs-degraded.txt"}])
    run = run_check("parallel-fs", {"filesystems": ["gpfs"]}, bin_dir=tmp_path)
    assert run.value("aami_pfs_gpfs_component_healthy", entity="kyukonhome") == 0
    assert run.value("aami_pfs_gpfs_components_unhealthy") == 2
    # DISABLED is shown, but not counted as unhealthy.
    assert run.value("aami_pfs_gpfs_component_info", component="OBJECT", status="DISABLED") == 1
    assert not run.has("aami_pfs_gpfs_component_healthy", component="OBJECT")


def test_gpfs_broken_daemon_down(tmp_path: Path) -> None:
    stub(tmp_path, "mmhealth", [{"stdout_file": F / "mmhealth-gpfs-failed.txt"}])
    run = run_check("parallel-fs", {"filesystems": ["gpfs"]}, bin_dir=tmp_path)
    assert run.value("aami_pfs_gpfs_component_healthy", component="GPFS") == 0
    assert run.value("aami_pfs_gpfs_component_info", component="FILESYSTEM",
                     status="DEPEND") == 1
    assert run.value("aami_pfs_gpfs_components_unhealthy") == 5


def test_no_parallel_filesystem_tools(tmp_path: Path) -> None:
    run = run_check("parallel-fs", {"gpfs_bin_dir": str(tmp_path / "none")}, bin_dir=tmp_path)
    assert run.names() == {"aami_pfs_tool_available"}
    for fs in ("lustre", "beegfs", "gpfs"):
        assert run.value("aami_pfs_tool_available", fs=fs) == 0
