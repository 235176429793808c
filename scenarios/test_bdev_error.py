"""The error-injection bdev (bdev_error_*) as the fault API of scenarios: each error type on a
seeded World, counts, hot removal of the base, the config round trip, and the same seed giving
the same outcome for a randomized workload with injected faults.

("pending" holds an I/O until a reset; Python's world.bdev() I/O waits for each completion, so
pending is exercised by the C++ tests in core/bdev/modules/error/tests.)"""

import random

import pytest

from strata import RpcError
from strata.bdev import BdevIoError


def make(world, blocks=1024):
    world.rpc("bdev_malloc_create", name="M0", num_blocks=blocks, block_size=512)
    assert world.rpc("bdev_error_create", base_name="M0") is True
    settle(world)
    return world.bdev("EE_M0")


def settle(world):
    """Lets other modules' asynchronous examine of the new bdev (e.g. lvol probing it for a
    store) finish before errors are armed, so they cannot take an armed error."""
    world.run_until(lambda: False, timeout_ns=10_000_000)


def inject(world, io_type, error_type, **kw):
    assert world.rpc("bdev_error_inject_error", name="EE_M0", io_type=io_type,
                     error_type=error_type, **kw) is True


def test_failure_by_type_and_count(world):
    d = make(world)
    data = bytes(range(256)) * 2
    inject(world, "write", "failure", num=2)
    for _ in range(2):
        with pytest.raises(BdevIoError) as e:
            d.write(0, data)
        assert e.value.errc == "io_error"
    d.write(0, data)
    assert d.read(0, 1) == data
    inject(world, "unmap", "failure")
    with pytest.raises(BdevIoError):
        d.unmap(0, 1)
    d.unmap(0, 1)
    inj = d.info()["driver_specific"]["error_disk"]["injections"]
    assert inj["write"]["injected"] == 2 and inj["write"]["remaining"] == 0
    assert inj["unmap"]["injected"] == 1
    assert d.iostat()["io_error"] == 3
    # "all" arms every type; "clear" disarms them.
    inject(world, "all", "failure", num=10)
    with pytest.raises(BdevIoError):
        d.read(0, 1)
    inject(world, "clear", "failure")
    d.read(0, 1)
    d.reset()


def test_corrupt_data_and_nomem(world):
    d = make(world)
    data = bytes(512 * 4)
    d.write(8, data)
    inject(world, "read", "corrupt_data", corrupt_offset=600, corrupt_value=0x5A)
    got = d.read(8, 4)
    assert got[600] == 0x5A and got[:600] == data[:600] and got[601:] == data[601:]
    assert d.read(8, 4) == data  # one armed, one applied
    inject(world, "write", "corrupt_data", corrupt_offset=3, corrupt_value=1)
    d.write(8, data)
    assert d.read(8, 1)[3] == 1
    inject(world, "write", "nomem", num=3)  # refused, retried: the caller never sees it
    payload = b"\x77" * 512
    d.write(20, payload)
    assert d.read(20, 1) == payload


def test_rpc_errors(world):
    make(world)
    with pytest.raises(RpcError, match="io_type"):
        world.rpc("bdev_error_inject_error", name="EE_M0", io_type="nope", error_type="failure")
    with pytest.raises(RpcError, match="corrupt_value"):
        world.rpc("bdev_error_inject_error", name="EE_M0", io_type="read", error_type="corrupt_data")
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_error_inject_error", name="M0", io_type="read", error_type="failure")
    with pytest.raises(RpcError, match="already exists"):
        world.rpc("bdev_error_create", base_name="M0")
    assert world.rpc("bdev_error_delete", name="EE_M0") is True
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_error_delete", name="EE_M0")


def test_base_removal_and_examine(world):
    # Configured before its base: created when the base appears; gone with it.
    assert world.rpc("bdev_error_create", base_name="M0") is True
    assert world.rpc("bdev_get_bdevs") == []
    world.rpc("bdev_malloc_create", name="M0", num_blocks=64, block_size=512)
    assert world.rpc("bdev_get_bdevs", name="EE_M0")[0]["num_blocks"] == 64
    assert world.rpc("bdev_get_bdevs", name="M0")[0]["claimed"] is True
    world.rpc("bdev_malloc_delete", name="M0")
    assert [b["name"] for b in world.rpc("bdev_get_bdevs")] == []


def test_config_round_trip(seed):
    import strata
    with strata.World(seed=seed) as w:
        w.rpc("bdev_malloc_create", name="M0", num_blocks=256, block_size=512)
        w.rpc("bdev_error_create", base_name="M0", uuid="1b4e28ba-2fa1-41d2-883f-0016d3cca427")
        w.rpc("bdev_passthru_create", base_bdev_name="EE_M0", name="PT0")
        saved = w.rpc("save_config")
    bdev = [s for s in saved["subsystems"] if s["subsystem"] == "bdev"][0]
    bdev["config"].reverse()  # any order: examine builds the stack
    with strata.World(seed=seed, config=saved) as w:
        assert w.rpc("bdev_get_bdevs", name="EE_M0")[0]["uuid"] == "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
        assert w.rpc("bdev_get_bdevs", name="PT0")[0]["num_blocks"] == 256


def run_faulty_workload(seed):
    """A workload whose ops and injected faults are drawn from the seed; returns its outcome."""
    import strata
    rng = random.Random(seed)
    outcome = []
    with strata.World(seed=seed) as w:
        make(w, blocks=512)
        d = w.bdev("EE_M0")
        for i in range(60):
            if rng.random() < 0.2:
                inject(w, rng.choice(["read", "write", "all"]),
                       rng.choice(["failure", "corrupt_data", "nomem"]),
                       num=rng.randint(1, 3), corrupt_offset=rng.randrange(1024),
                       corrupt_value=rng.randint(1, 255))
            off = rng.randrange(0, 510)
            try:
                if rng.random() < 0.5:
                    d.write(off, bytes([i % 256]) * 1024)
                    outcome.append(("w", off, "ok"))
                else:
                    outcome.append(("r", off, hash(d.read(off, 2))))
            except BdevIoError as e:
                outcome.append(("err", off, e.errc))
        outcome.append(d.info()["driver_specific"]["error_disk"]["injections"])
        outcome.append(w.trace_hash())
    return outcome


def test_same_seed_same_outcome(seed):
    a = run_faulty_workload(seed)
    assert any(o[0] == "err" for o in a[:-2] if isinstance(o, tuple)) or a[-2], "no fault drawn"
    assert run_faulty_workload(seed) == a
