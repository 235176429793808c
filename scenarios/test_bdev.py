"""The bdev layer through Python: malloc/null bdevs over RPC, typed I/O, QoS, iostat, and
save_config round trip."""

import pytest

from strata.bdev import BdevIoError


def test_malloc_round_trip(world):
    assert world.rpc("bdev_malloc_create", name="Malloc0", num_blocks=2048, block_size=512) == "Malloc0"
    d = world.bdev("Malloc0")
    data = bytes(range(256)) * 8  # 4 blocks
    d.write(10, data)
    assert d.read(10, 4) == data
    assert d.compare(10, data)
    assert not d.compare(10, bytes(len(data)))
    assert d.compare_and_write(10, data, bytes(len(data)))
    assert d.read(10, 4) == bytes(len(data))
    d.write(20, data)
    d.write_zeroes(20, 2)
    assert d.read(20, 4) == bytes(1024) + data[1024:]
    d.flush()
    d.reset()
    st = d.iostat()
    assert st["num_write_ops"] >= 2 and st["num_read_ops"] >= 3 and st["num_compare_and_write_ops"] == 1


def test_errors_are_clear(world):
    world.rpc("bdev_null_create", name="Null0", num_blocks=64, block_size=4096)
    d = world.bdev("Null0")
    with pytest.raises(RuntimeError, match="invalid_argument"):
        d.read(63, 2)  # beyond the end
    with pytest.raises(ValueError):
        d.write(0, b"short")
    with pytest.raises(RuntimeError, match="not_found"):
        world.bdev("NoSuchBdev").read(0, 1)


def test_get_bdevs_shape_and_qos(world):
    world.rpc("bdev_malloc_create", name="M1", num_blocks=128, block_size=4096, uuid="")
    info = world.rpc("bdev_get_bdevs", name="M1")[0]
    for key in ("name", "aliases", "product_name", "block_size", "num_blocks", "uuid",
                "assigned_rate_limits", "claimed", "supported_io_types", "driver_specific"):
        assert key in info
    assert info["supported_io_types"]["read"] is True
    assert world.rpc("bdev_set_qos_limit", name="M1", rw_ios_per_sec=2000) is True
    assert world.rpc("bdev_get_bdevs", name="M1")[0]["assigned_rate_limits"]["rw_ios_per_sec"] == 2000
    cfg = world.rpc("save_config")
    bdev_cfg = [s for s in cfg["subsystems"] if s["subsystem"] == "bdev"][0]["config"]
    methods = [e["method"] for e in bdev_cfg]
    assert "bdev_malloc_create" in methods and "bdev_set_qos_limit" in methods
    assert methods[-1] == "bdev_wait_for_examine"


def test_config_recreates_bdevs(seed):
    import strata
    config = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "Cfg0", "num_blocks": 64, "block_size": 512}}]}]}
    with strata.World(seed=seed, config=config) as w:
        assert w.rpc("bdev_get_bdevs", name="Cfg0")[0]["num_blocks"] == 64
        saved = w.rpc("save_config")
    # Closing the World removed its bdevs; the saved config builds them again.
    with strata.World(seed=seed, config=saved) as w2:
        assert w2.rpc("bdev_get_bdevs", name="Cfg0")[0]["num_blocks"] == 64


def test_delete_and_duplicates(world):
    world.rpc("bdev_malloc_create", name="D0", num_blocks=8, block_size=512)
    from strata import RpcError
    with pytest.raises(RpcError, match="already exists"):
        world.rpc("bdev_malloc_create", name="D0", num_blocks=8, block_size=512)
    assert world.rpc("bdev_malloc_delete", name="D0") is True
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_malloc_delete", name="D0")
