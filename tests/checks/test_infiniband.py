"""infiniband against a recorded sysfs tree and recorded ibstat (fixtures/infiniband/SOURCE)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.checks.replay import FIXTURES, run_check, stub

F = FIXTURES / "infiniband"
SYS = F / "sys-h100"


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    shutil.copytree(SYS, root)
    return root


def test_healthy_h100_ndr(tmp_path: Path) -> None:
    root = tree(tmp_path)
    shutil.rmtree(root / "class/infiniband/mlx5_1")
    run = run_check("infiniband", {"sysfs_root": str(root), "expected_ports": 8,
                                   "expected_rate_gbps": 400}, bin_dir=tmp_path / "bin")
    assert run.value("aami_ib_source_available", source="sysfs") == 1
    assert run.value("aami_ib_source_available", source="ibstat") == 0
    assert run.value("aami_ib_ports_active") == 8
    assert run.value("aami_ib_ports_expected") == 8
    port = {"device": "mlx5_0", "port": "1"}
    assert run.value("aami_ib_port_active", **port) == 1
    assert run.value("aami_ib_port_physical_link_up", **port) == 1
    assert run.value("aami_ib_port_rate_bits_per_second", **port) == 400e9
    assert run.value("aami_ib_port_info", **port, link_layer="InfiniBand") == 1
    assert run.value("aami_ib_port_info", device="mlx5_bond_0", link_layer="Ethernet") == 1
    assert run.value("aami_ib_port_rate_bits_per_second", device="mlx5_bond_0") == 200e9
    assert run.value("aami_ib_port_errors_total", **port, counter="symbol_error") == 0
    assert run.value("aami_ib_port_errors_total", **port, counter="port_rcv_errors") == 14
    assert run.types["aami_ib_port_errors_total"] == "counter"
    assert not run.has("aami_ib_port_errors_total", counter="port_xmit_data")  # traffic


def test_degraded_link_flapped(tmp_path: Path) -> None:
    run = run_check("infiniband", {"sysfs_root": str(SYS)}, bin_dir=tmp_path)
    assert run.value("aami_ib_port_errors_total", device="mlx5_1", counter="link_downed") == 255
    assert run.value("aami_ib_ports_active") == 9


def test_broken_port_down(tmp_path: Path) -> None:
    root = tree(tmp_path)
    port = root / "class/infiniband/mlx5_4/ports/1"
    (port / "state").write_text("1: DOWN\n")
    (port / "phys_state").write_text("3: Disabled\n")
    run = run_check("infiniband", {"sysfs_root": str(root), "expected_ports": 9,
                                   "devices": ["mlx5_0", "mlx5_4"]}, bin_dir=tmp_path / "bin")
    assert run.value("aami_ib_port_active", device="mlx5_4") == 0
    assert run.value("aami_ib_port_physical_link_up", device="mlx5_4") == 0
    assert run.value("aami_ib_port_info", device="mlx5_4", state="DOWN") == 1
    assert run.value("aami_ib_ports_active") == 1  # only the devices asked for
    assert not run.has("aami_ib_port_active", device="mlx5_5")


def test_ibstat_when_sysfs_is_absent(tmp_path: Path) -> None:
    stub(tmp_path, "ibstat", [{"stdout_file": F / "ibstat-h100-some-down.txt"}])
    run = run_check("infiniband", {"sysfs_root": str(tmp_path / "nosys")}, bin_dir=tmp_path)
    assert run.value("aami_ib_source_available", source="sysfs") == 0
    assert run.value("aami_ib_source_available", source="ibstat") == 1
    assert run.value("aami_ib_ports_active") == 9
    assert run.value("aami_ib_port_active", device="mlx5_2") == 0
    assert run.value("aami_ib_port_physical_link_up", device="mlx5_2") == 0
    assert run.value("aami_ib_port_rate_bits_per_second", device="mlx5_0") == 400e9
    assert run.value("aami_ib_port_info", device="mlx5_1", link_layer="Ethernet",
                     fw_ver="22.38.1002") == 1
    assert not run.has("aami_ib_port_errors_total")


def test_ibstat_all_active(tmp_path: Path) -> None:
    stub(tmp_path, "ibstat", [{"stdout_file": F / "ibstat-h100-all-active.txt"}])
    run = run_check("infiniband", {"sysfs_root": str(tmp_path / "nosys")}, bin_dir=tmp_path)
    assert run.value("aami_ib_ports_active") == 9


def test_no_rdma_stack_at_all(tmp_path: Path) -> None:
    run = run_check("infiniband", {"sysfs_root": str(tmp_path / "nosys")}, bin_dir=tmp_path)
    assert run.value("aami_ib_source_available", source="sysfs") == 0
    assert run.value("aami_ib_source_available", source="ibstat") == 0
    assert run.names() == {"aami_ib_source_available"}
