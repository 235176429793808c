"""A whole stack from RPCs on the simulator: an emulated NVMe SSD (sim subsystem), bdev_nvme on
it, I/O through the bdev layer, faults injected by RPC, power cuts, save_config round trip."""

import pytest

from strata import RpcError
from strata.bdev import BdevIoError

ADDR = "0000:05:00.0"


def make_stack(world, **model):
    params = {"traddr": ADDR, "namespaces": [{"nsid": 1, "num_blocks": 65536, "block_size": 512}]}
    params.update(model)
    assert world.rpc("sim_nvme_create", **params) == ADDR
    assert world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR) == ["Nvme0n1"]
    return world.bdev("Nvme0n1")


def test_io_and_identity(world):
    d = make_stack(world, serial="SIM-1")
    info = d.info()
    assert info["num_blocks"] == 65536 and info["block_size"] == 512
    assert info["driver_specific"]["nvme"]["serial_number"] == "SIM-1"
    data = bytes(range(256)) * 16
    d.write(100, data)
    assert d.read(100, 8) == data
    devs = world.rpc("sim_get_devices")
    assert devs[0]["traddr"] == ADDR and devs[0]["stats"]["commands"] > 0
    ctrls = world.rpc("bdev_nvme_get_controllers")
    assert ctrls[0]["name"] == "Nvme0" and ctrls[0]["bdevs"] == ["Nvme0n1"]


def test_media_error_by_rpc(world):
    d = make_stack(world)
    rule = {"action": "error_status", "opcode": 2, "lba_first": 10, "lba_last": 10, "sct": 2, "sc": 0x81}
    assert world.rpc("sim_nvme_inject_fault", traddr=ADDR, rule=rule) >= 1
    d.read(0, 8)  # does not touch LBA 10
    with pytest.raises(BdevIoError) as e:
        d.read(8, 8)
    assert e.value.errc == "io_error" and (e.value.sct, e.value.sc) == (2, 0x81)
    world.rpc("sim_nvme_clear_faults", traddr=ADDR)
    d.read(8, 8)
    with pytest.raises(RpcError, match="unknown fault action"):
        world.rpc("sim_nvme_inject_fault", traddr=ADDR, rule={"action": "explode"})


def test_power_cut_loses_only_unflushed(world):
    d = make_stack(world)
    a, b = b"\x11" * 4096, b"\x22" * 4096
    d.write(0, a)
    d.flush()
    d.write(8, b)  # cached, never flushed
    world.rpc("sim_nvme_power_cut", traddr=ADDR, torn=False)
    world.advance(50_000_000)  # the driver notices (CSTS.RDY 0) and resets the controller
    assert d.read(0, 8) == a
    assert d.read(8, 8) == bytes(4096)


def test_config_round_trip(seed):
    import strata
    with strata.World(seed=seed) as w:
        make_stack(w, read_latency_us=50)
        saved = w.rpc("save_config")
    subsystems = [s["subsystem"] for s in saved["subsystems"]]
    assert subsystems.index("sim") < subsystems.index("bdev")
    with strata.World(seed=seed, config=saved) as w2:
        d = w2.bdev("Nvme0n1")
        t0 = w2.now()
        d.read(0, 1)
        assert w2.now() - t0 >= 50_000  # the model's read latency survived the round trip


def test_hot_removal_by_rpc(world):
    make_stack(world)
    world.rpc("sim_pci_surprise_remove", traddr=ADDR)
    world.advance(50_000_000)
    assert world.rpc("bdev_get_bdevs") == []


def test_disable_holds_io_until_enabled(world):
    """bdev_nvme_disable_controller (SPDK v24.09): the controller's I/O qpairs go; I/O
    outstanding then and I/O submitted while disabled waits (does not fail) and completes
    after bdev_nvme_enable_controller, which resets the controller and reconnects."""
    import strata.bdev as sbdev
    d = make_stack(world, write_latency_us=200)
    # The submitting Thread's channel has its qpair before the disable (the first I/O made it).
    first = d.submit_write(200, b"\x01" * 4096)
    assert sbdev.wait(world, [first], timeout_ns=1_000_000_000) and first.ok
    inflight = [d.submit_write(8 * i, bytes([0x40 + i]) * 4096) for i in range(4)]
    assert world.rpc("bdev_nvme_disable_controller", name="Nvme0") is True
    assert world.rpc("bdev_nvme_get_controllers", name="Nvme0")[0]["state"] == "disabled"
    admin0 = world.rpc("sim_get_devices")[0]["stats"]["admin_commands"]
    later = [d.submit_write(64 + 8 * i, bytes([0x60 + i]) * 4096) for i in range(4)]
    read = d.submit_read(200, 8)
    # Nothing completes while disabled, however long the world runs.
    assert not sbdev.wait(world, inflight + later + [read], timeout_ns=50_000_000)
    assert not any(io.done for io in later + [read])
    assert [io.status for io in inflight] == ["pending"] * 4
    with pytest.raises(RpcError, match="already disabled"):
        world.rpc("bdev_nvme_disable_controller", name="Nvme0")
    with pytest.raises(RpcError, match="disabled"):
        world.rpc("bdev_nvme_reset_controller", name="Nvme0")
    assert world.rpc("bdev_nvme_enable_controller", name="Nvme0") is True
    assert world.rpc("bdev_nvme_get_controllers", name="Nvme0")[0]["state"] == "ready"
    assert sbdev.wait(world, inflight + later + [read], timeout_ns=1_000_000_000)
    assert [io.status for io in inflight + later + [read]] == ["success"] * 9
    assert read.data == b"\x01" * 4096
    for i in range(4):
        assert d.read(8 * i, 8) == bytes([0x40 + i]) * 4096
        assert d.read(64 + 8 * i, 8) == bytes([0x60 + i]) * 4096
    # enable re-initialised the controller (identify, queues created again)
    assert world.rpc("sim_get_devices")[0]["stats"]["admin_commands"] > admin0


def test_disable_enable_refusals(world):
    make_stack(world)
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_nvme_disable_controller", name="Nope")
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_nvme_enable_controller", name="Nope")
    with pytest.raises(RpcError, match="already enabled"):
        world.rpc("bdev_nvme_enable_controller", name="Nvme0")
    with pytest.raises(RpcError, match="cntlid 77"):
        world.rpc("bdev_nvme_disable_controller", name="Nvme0", cntlid=77)
    with pytest.raises(RpcError, match="out of range"):
        world.rpc("bdev_nvme_disable_controller", name="Nvme0", cntlid=70000)
    assert world.rpc("bdev_nvme_get_controllers", name="Nvme0")[0]["state"] == "ready"
    # Detaching a disabled controller works (its held I/O, if any, ends aborted).
    assert world.rpc("bdev_nvme_disable_controller", name="Nvme0", cntlid=0) is True
    assert world.rpc("bdev_nvme_detach_controller", name="Nvme0") is True
    assert world.rpc("bdev_nvme_get_controllers") == []
