"""The NVMe driver (core/nvme) against the controller model (hw-emulation/nvme), driven from
Python: world.add_nvme() builds the model with its namespaces, latency and fault plan, and
world.nvme_attach() puts the driver on it. Every test is seeded (see conftest.py)."""

import pytest

import strata
from strata.nvme import NvmeError, NvmeSubmitError, NvmeTimeout

ADDR = "0000:01:00.0"
MIB = 1 << 20


def small_world(world, **model):
    model.setdefault("namespaces", [{"nsid": 1, "size": 16 * MIB, "block_size": 512}])
    dev = world.add_nvme(ADDR, **model)
    return dev, world.nvme_attach(ADDR)


def test_identify_and_namespaces(world):
    dev, ctrl = small_world(world, serial="PY-1", mdts=5, namespaces=[
        {"nsid": 1, "size": 16 * MIB, "block_size": 512},
        {"nsid": 2, "num_blocks": 1024, "block_size": 4096}])
    idc = ctrl.identify()
    assert idc["sn"].strip() == "PY-1"
    assert idc["nn"] >= 2 and idc["mdts"] == 5
    assert idc["max_transfer_bytes"] == 4096 << 5
    nss = {n["nsid"]: n for n in ctrl.namespaces()}
    assert nss[1]["block_size"] == 512 and nss[1]["num_blocks"] == 16 * MIB // 512
    assert nss[2]["block_size"] == 4096 and nss[2]["num_blocks"] == 1024
    ctrl.detach()


@pytest.mark.parametrize("nblocks", [1, 7, 8, 9, 64, 255, 256])
def test_data_integrity_across_sizes(world, nblocks):
    # 8 blocks of 512 = one 4 KiB page: 9 needs a second PRP entry, more than 16 a PRP list;
    # 256 blocks is the MDTS limit (2^5 x 4 KiB).
    _, ctrl = small_world(world)
    data = bytes((i * 7 + nblocks) & 0xFF for i in range(nblocks * 512))
    ctrl.write(1, 33, data)
    assert ctrl.read(1, 33, nblocks) == data
    ctrl.compare(1, 33, data)
    with pytest.raises(NvmeError) as e:
        ctrl.compare(1, 33, bytes(len(data)))
    assert e.value.name == "COMPARE FAILURE"
    ctrl.detach()


def test_beyond_mdts_is_refused_before_submission(world):
    _, ctrl = small_world(world)
    with pytest.raises(ValueError, match="max_io_blocks"):
        ctrl.write(1, 0, bytes(257 * 512))


def test_write_zeroes_and_deallocate(world):
    _, ctrl = small_world(world)
    ctrl.write(1, 0, b"\x5a" * 4096)
    ctrl.write_zeroes(1, 0, 4)
    assert ctrl.read(1, 0, 8) == bytes(2048) + b"\x5a" * 2048
    ctrl.deallocate(1, 4, 4)
    assert ctrl.read(1, 4, 4) == bytes(2048)


def test_lba_out_of_range_is_the_spec_status(world):
    _, ctrl = small_world(world)
    last = 16 * MIB // 512
    with pytest.raises((NvmeError, NvmeSubmitError)) as e:
        ctrl.read(1, last, 1)
    if isinstance(e.value, NvmeError):
        assert e.value.name == "LBA OUT OF RANGE" and e.value.errc == "out_of_range"


def test_media_error_on_one_lba_range(world):
    dev, ctrl = small_world(world)
    rid = dev.faults.add({"action": "error_status", "opcode": 2, "lba_first": 100,
                          "lba_last": 109, "sct": 2, "sc": 0x81})
    ctrl.read(1, 0, 8)
    with pytest.raises(NvmeError) as e:
        ctrl.read(1, 96, 8)
    assert (e.value.sct, e.value.sc) == (2, 0x81)
    assert e.value.name == "UNRECOVERED READ ERROR"
    rules = dev.faults.list()
    assert rules[0]["id"] == rid and rules[0]["hits"] == 1
    assert dev.faults.remove(rid)
    ctrl.read(1, 96, 8)


def test_nth_match_only(world):
    dev, ctrl = small_world(world)
    dev.faults.add({"action": "error_status", "opcode": 1, "nth": 3, "sct": 0, "sc": 0x06})
    ctrl.write(1, 0, bytes(512))
    ctrl.write(1, 1, bytes(512))
    with pytest.raises(NvmeError):
        ctrl.write(1, 2, bytes(512))
    ctrl.write(1, 3, bytes(512))  # the rule fires once


def test_dropped_completion_times_out_then_resets(world):
    dev, _ = small_world(world)
    ctrl = strata.nvme.NvmeController(world, ADDR)
    ctrl.detach()
    ctrl = world.nvme_attach(ADDR, timeout_us=1000)
    dev.faults.add({"action": "drop_completion", "opcode": 2, "nth": 1})
    with pytest.raises(NvmeError) as e:
        ctrl.read(1, 0, 1)
    assert e.value.errc in ("aborted", "timeout")
    stats = ctrl.stats()
    assert stats["timeouts"] >= 1
    assert ctrl.read(1, 0, 1) == bytes(512)  # the controller is usable afterwards


def test_latency_model_in_virtual_time(world):
    _, ctrl = small_world(world, latency={"read": ("fixed", 250_000), "write": 10_000})
    t0 = world.now()
    ctrl.read(1, 0, 1)
    assert world.now() - t0 >= 250_000
    t0 = world.now()
    ctrl.write(1, 0, bytes(512))
    elapsed = world.now() - t0
    assert 10_000 <= elapsed < 250_000


def test_power_cut_keeps_flushed_and_fua_writes(world):
    dev, ctrl = small_world(world)
    ctrl.write(1, 0, b"\x01" * 512)
    ctrl.flush(1)
    ctrl.write(1, 1, b"\x02" * 512, fua=True)
    ctrl.write(1, 2, b"\x03" * 512)  # volatile cache only
    dev.power_cut()
    ctrl.reset()
    assert ctrl.read(1, 0, 1) == b"\x01" * 512
    assert ctrl.read(1, 1, 1) == b"\x02" * 512
    assert ctrl.read(1, 2, 1) == bytes(512)


def test_reset_under_load_completes_everything(world):
    _, ctrl = small_world(world)
    for i in range(16):
        ctrl.write(1, i * 8, bytes([i]) * 4096)
    ctrl.reset()
    for i in range(16):
        assert ctrl.read(1, i * 8, 8) == bytes([i]) * 4096
    assert ctrl.stats()["resets"] >= 1


def test_surprise_remove_fails_io_cleanly(world):
    dev, ctrl = small_world(world)
    dev.surprise_remove()
    world.advance(50_000_000)
    with pytest.raises((NvmeError, NvmeSubmitError)) as e:
        ctrl.read(1, 0, 1)
    assert e.value.errc == "device_removed"


def test_bad_model_config_is_a_clear_error(world):
    with pytest.raises(ValueError, match="block size"):
        world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 1000, "block_size": 512}])
    with pytest.raises(ValueError, match="unknown opcode"):
        world.add_nvme(ADDR, latency={"teleport": 5})


def test_same_seed_same_trace(seed):
    def run():
        with strata.World(seed=seed) as w:
            dev = w.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 4 * MIB}],
                             latency={"read": ("exponential", 40_000),
                                      "write": ("uniform", 5_000, 90_000)})
            ctrl = w.nvme_attach(ADDR)
            times = []
            for i in range(20):
                ctrl.write(1, i, bytes([i]) * 512)
                ctrl.read(1, i, 1)
                times.append(w.now())
            ctrl.detach()
            return times, dev.stats["commands"]
    assert run() == run()
