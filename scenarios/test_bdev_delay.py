"""The delay bdev (bdev_delay_*) from Python on a seeded World: latencies observed in virtual
time match the configuration, change at run time, survive the config round trip, and the same
seed gives the same latencies (the seed picks which I/O take the p99 latency)."""

import pytest

from strata import RpcError


def make(world, avg_r=100, p99_r=1000, avg_w=200, p99_w=2000):
    world.rpc("bdev_malloc_create", name="M0", num_blocks=4096, block_size=512)
    assert world.rpc("bdev_delay_create", base_bdev_name="M0", name="D0",
                     avg_read_latency=avg_r, p99_read_latency=p99_r,
                     avg_write_latency=avg_w, p99_write_latency=p99_w) == "D0"
    # Other modules' asynchronous examine of D0 (lvol probing it) finishes first.
    world.run_until(lambda: False, timeout_ns=50_000_000)
    return world.bdev("D0")


def timed(world, fn):
    t = world.now()
    fn()
    return world.now() - t


def read_latencies(world, d, n):
    return [timed(world, lambda i=i: d.read(i % 4000, 1)) for i in range(n)]


def test_latency_in_virtual_time(world):
    d = make(world)
    before = d.iostat()["num_read_ops"]  # other modules' examine may have read the new bdev
    lat = read_latencies(world, d, 1000)
    slow = [x for x in lat if x >= 1_000_000]
    fast = [x for x in lat if x < 1_000_000]
    assert all(100_000 <= x < 105_000 for x in fast)
    assert all(x < 1_005_000 for x in slow)
    assert 2 <= len(slow) <= 25  # 1 in 100 on average: 10 expected
    mean = sum(lat) / len(lat)
    expected = 0.99 * 100_000 + 0.01 * 1_000_000
    assert abs(mean - expected) < 0.25 * expected
    # The bdev layer's own statistics see the same latencies.
    st = d.iostat()
    assert st["num_read_ops"] - before >= 1000
    assert st["min_read_latency_ticks"] >= 100_000
    w = timed(world, lambda: d.write(0, b"\0" * 512))
    assert 200_000 <= w < 2_005_000


def test_update_latency_at_run_time(world):
    d = make(world, 50, 50, 50, 50)
    assert max(read_latencies(world, d, 20)) < 55_000
    assert world.rpc("bdev_delay_update_latency", delay_bdev_name="D0",
                     latency_type="avg_read", latency_us=500) is True
    world.rpc("bdev_delay_update_latency", delay_bdev_name="D0", latency_type="p99_read", latency_us=500)
    assert min(read_latencies(world, d, 20)) >= 500_000
    assert d.info()["driver_specific"]["delay"]["avg_read_latency"] == 500
    with pytest.raises(RpcError, match="latency_type"):
        world.rpc("bdev_delay_update_latency", delay_bdev_name="D0", latency_type="p50", latency_us=1)
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_delay_update_latency", delay_bdev_name="M0", latency_type="avg_read", latency_us=1)


def test_data_and_delete(world):
    d = make(world, 10, 10, 10, 10)
    data = bytes(range(256)) * 4
    d.write(5, data)
    assert d.read(5, 2) == data
    assert world.rpc("bdev_get_bdevs", name="M0")[0]["claimed"] is True
    assert world.rpc("bdev_delay_delete", name="D0") is True
    assert world.rpc("bdev_get_bdevs", name="M0")[0]["claimed"] is False
    assert world.bdev("M0").read(5, 2) == data


def test_config_round_trip(seed):
    import strata
    with strata.World(seed=seed) as w:
        make(w, 1, 2, 3, 4)
        w.rpc("bdev_delay_update_latency", delay_bdev_name="D0", latency_type="avg_write", latency_us=33)
        saved = w.rpc("save_config")
    [s for s in saved["subsystems"] if s["subsystem"] == "bdev"][0]["config"].reverse()
    with strata.World(seed=seed, config=saved) as w:
        info = w.rpc("bdev_get_bdevs", name="D0")[0]["driver_specific"]["delay"]
        assert (info["avg_read_latency"], info["avg_write_latency"], info["p99_write_latency"]) == (1, 33, 4)


def latencies_for(seed):
    import strata
    with strata.World(seed=seed) as w:
        d = make(w, 20, 400, 20, 400)
        return read_latencies(w, d, 300), w.trace_hash()


def test_same_seed_same_latencies(seed):
    a = latencies_for(seed)
    assert latencies_for(seed) == a
    assert latencies_for(seed + 1)[0] != a[0] or latencies_for(seed + 2)[0] != a[0]
