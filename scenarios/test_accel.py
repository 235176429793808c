"""The accel framework through Python: an emulated I/OAT channel created by RPC, the ioat module
scanned at run time, routing and overrides, statistics, and the save_config round trip."""

import pytest


def test_defaults_route_everything_to_software(world):
    assert world.rpc("accel_get_opc_assignments") == {
        "copy": "software", "fill": "software", "compare": "software", "crc32c": "software",
        "copy_crc32c": "software", "xor": "software"}
    mods = {m["module"]: m for m in world.rpc("accel_get_module_info")}
    assert mods["software"]["started"] and not mods["ioat"]["started"]
    assert mods["ioat"]["supported ops"] == ["copy", "fill"]


def test_ioat_scan_routes_copy_and_fill_to_the_engine(world):
    assert world.rpc("sim_ioat_create", traddr="0000:00:04.0", xfercap_log2=16) == "0000:00:04.0"
    assert world.rpc("ioat_scan_accel_module") is True
    a = world.rpc("accel_get_opc_assignments")
    assert a["copy"] == "ioat" and a["fill"] == "ioat" and a["crc32c"] == "software"
    assert world.rpc("accel_assign_opc", opname="copy", module="software") is True
    assert world.rpc("accel_get_opc_assignments")["copy"] == "software"
    stats = world.rpc("accel_get_stats")
    assert [o["opcode"] for o in stats["operations"]] == [
        "copy", "fill", "compare", "crc32c", "copy_crc32c", "xor"]
    assert stats["retry"]["task"] == 0
    accel = next(s["config"] for s in world.rpc("save_config")["subsystems"]
                 if s["subsystem"] == "accel")
    assert {"method": "ioat_scan_accel_module"} in accel
    assert {"method": "accel_assign_opc",
            "params": {"opname": "copy", "module": "software"}} in accel


def test_bad_params_are_clear(world):
    with pytest.raises(Exception, match="dualcast"):
        world.rpc("accel_assign_opc", opname="dualcast", module="software")
    with pytest.raises(Exception, match="does not support"):
        world.rpc("accel_assign_opc", opname="crc32c", module="ioat")
    with pytest.raises(Exception, match="gpu"):
        world.rpc("accel_assign_opc", opname="copy", module="gpu")
