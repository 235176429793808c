"""The raid bdev module through Python (SPDK's RPCs): raid0/concat data placement with seeded
writes across strip boundaries, raid1 degraded by a member's removal, rebuilt onto a replacement
and surviving the original's removal, configuring -> online from a config listing the raid
before its members, save_config round trip, and clear RPC errors."""

import random

import pytest

from strata import RpcError

BS = 512


def _malloc(w, name, blocks):
    w.rpc("bdev_malloc_create", name=name, num_blocks=blocks, block_size=BS)
    # Other modules examine a new bdev asynchronously (lvol reads it for a superblock) and may
    # hold it open meanwhile, which a raid's claim would refuse: let them finish, as SPDK users
    # call bdev_wait_for_examine before claiming.
    w.rpc("bdev_wait_for_examine")
    w.run_until(lambda: False, timeout_ns=1_000_000_000)


def _raid(w, name):
    found = [r for r in w.rpc("bdev_raid_get_bdevs", category="all") if r["name"] == name]
    assert len(found) == 1, found
    return found[0]


def _block(rng):
    return bytes(rng.getrandbits(8) for _ in range(16)) * (BS // 16)


def _write_random(w, name, model, rng, count, max_blocks):
    """Seeded writes of random length anywhere in the bdev; model[lba] follows them."""
    d = w.bdev(name)
    n = len(model)
    for _ in range(count):
        k = rng.randint(1, max_blocks)
        off = rng.randrange(0, n - k + 1)
        blocks = [_block(rng) for _ in range(k)]
        d.write(off, b"".join(blocks))
        model[off:off + k] = blocks


def _check_all(w, name, model):
    d = w.bdev(name)
    for off in range(0, len(model), 256):
        k = min(256, len(model) - off)
        got = d.read(off, k)
        assert got == b"".join(model[off:off + k]), "mismatch in blocks %d..%d" % (off, off + k)


def test_raid0_stripes_and_concat_ends_to_end(world, seed):
    rng = random.Random(seed)
    for i in range(3):
        _malloc(world, "S%d" % i, 1024)
    assert world.rpc("bdev_raid_create", name="Stripe", raid_level="raid0", strip_size_kb=4,
                     base_bdevs=["S0", "S1", "S2"]) is True
    info = world.bdev("Stripe").info()
    assert info["num_blocks"] == 3 * 1024 and info["optimal_io_boundary"] == 8
    raid = info["driver_specific"]["raid"]
    assert raid["state"] == "online" and raid["raid_level"] == "raid0"
    assert [b["name"] for b in raid["base_bdevs_list"]] == ["S0", "S1", "S2"]
    assert world.rpc("bdev_get_bdevs", name="S1")[0]["claimed"] is True
    model = [bytes(BS)] * (3 * 1024)
    _write_random(world, "Stripe", model, rng, 60, 40)
    _check_all(world, "Stripe", model)
    # Raid block b lives on member (b // 8) % 3 at ((b // 8) // 3) * 8 + b % 8.
    lba = rng.randrange(0, 3 * 1024)
    member, moff = (lba // 8) % 3, ((lba // 8) // 3) * 8 + lba % 8
    assert world.bdev("S%d" % member).read(moff, 1) == model[lba]
    world.bdev("Stripe").unmap(5, 30)
    model[5:35] = [bytes(BS)] * 30
    _check_all(world, "Stripe", model)

    _malloc(world, "C0", 100)
    _malloc(world, "C1", 50)
    world.rpc("bdev_raid_create", name="Cat", raid_level="concat", strip_size_kb=2, base_bdevs=["C0", "C1"])
    assert world.bdev("Cat").num_blocks == 100 + 48  # whole 4-block strips per member
    cmodel = [bytes(BS)] * 148
    _write_random(world, "Cat", cmodel, rng, 30, 20)
    _check_all(world, "Cat", cmodel)
    assert world.bdev("C1").read(0, 48) == b"".join(cmodel[100:148])


def _wait_rebuild(world, name):
    progress = []
    for _ in range(10000):
        r = _raid(world, name)
        if "process" not in r:
            return progress
        assert r["process"]["type"] == "rebuild"
        progress.append(r["process"]["progress"]["blocks"])
        world.run_until(lambda: False, timeout_ns=200_000)
    raise AssertionError("rebuild did not finish: %r" % _raid(world, name))


def test_raid1_degrades_rebuilds_and_survives_losing_the_original(world, seed):
    rng = random.Random(seed)
    blocks = 4096
    _malloc(world, "M0", blocks)
    _malloc(world, "M1", blocks)
    world.rpc("bdev_raid_create", name="Mirror", raid_level="raid1", base_bdevs=["M0", "M1"])
    model = [bytes(BS)] * blocks
    _write_random(world, "Mirror", model, rng, 40, 64)
    assert world.bdev("M0").read(0, 64) == world.bdev("M1").read(0, 64)

    # Hot removal of a member: the mirror keeps serving, degraded.
    assert world.rpc("bdev_malloc_delete", name="M0") is True
    r = _raid(world, "Mirror")
    assert r["state"] == "online" and r["num_base_bdevs_operational"] == 1
    assert r["base_bdevs_list"][0]["name"] is None
    _write_random(world, "Mirror", model, rng, 20, 64)
    _check_all(world, "Mirror", model)

    # A replacement fills the empty slot and is rebuilt in the background.
    _malloc(world, "M2", blocks + 8)
    assert world.rpc("bdev_raid_add_base_bdev", raid_bdev="Mirror", base_bdev="M2") is True
    r = _raid(world, "Mirror")
    assert r["process"]["type"] == "rebuild" and r["process"]["target"] == "M2"
    _write_random(world, "Mirror", model, rng, 10, 64)  # writes during the rebuild
    _wait_rebuild(world, "Mirror")
    r = _raid(world, "Mirror")
    assert r["num_base_bdevs_operational"] == 2 and r["num_base_bdevs_discovered"] == 2

    # The original goes: the replacement alone holds everything.
    assert world.rpc("bdev_raid_remove_base_bdev", name="M1") is True
    assert _raid(world, "Mirror")["num_base_bdevs_operational"] == 1
    _check_all(world, "Mirror", model)
    assert world.bdev("M2").read(0, 256) == b"".join(model[:256])
    assert world.rpc("bdev_raid_delete", name="Mirror") is True
    assert world.rpc("bdev_raid_get_bdevs", category="all") == []
    assert world.rpc("bdev_get_bdevs", name="M2")[0]["claimed"] is False


def test_raid1_over_error_bdev_failing_reads_and_writes(world, seed):
    """The error module as the fault injector: a mirror whose reads fail is read from the other
    one; a mirror that fails a write leaves the raid and the write still succeeds."""
    rng = random.Random(seed)
    _malloc(world, "F0", 2048)
    _malloc(world, "F1", 2048)
    world.rpc("bdev_error_create", base_name="F0")
    world.rpc("bdev_wait_for_examine")
    world.run_until(lambda: False, timeout_ns=1_000_000_000)
    world.rpc("bdev_raid_create", name="Mirror", raid_level="raid1", base_bdevs=["EE_F0", "F1"])
    model = [bytes(BS)] * 2048
    _write_random(world, "Mirror", model, rng, 20, 32)
    world.rpc("bdev_error_inject_error", name="EE_F0", io_type="read", error_type="failure", num=4)
    _check_all(world, "Mirror", model)
    assert _raid(world, "Mirror")["num_base_bdevs_operational"] == 2
    world.rpc("bdev_error_inject_error", name="EE_F0", io_type="write", error_type="failure", num=1)
    _write_random(world, "Mirror", model, rng, 5, 32)  # raises BdevIoError if a write failed
    r = _raid(world, "Mirror")
    assert r["num_base_bdevs_operational"] == 1 and r["base_bdevs_list"][0]["name"] is None, r
    assert world.rpc("bdev_get_bdevs", name="EE_F0")[0]["claimed"] is False
    _check_all(world, "Mirror", model)
    assert world.bdev("F1").read(0, 128) == b"".join(model[:128])


def test_config_lists_raid_before_members_and_round_trips(seed):
    import strata
    config = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_raid_create", "params": {"name": "R", "raid_level": "1", "base_bdevs": ["A", "B"]}},
        {"method": "bdev_raid_create", "params": {"name": "Z", "raid_level": "concat", "strip_size_kb": 64,
                                                  "base_bdevs": ["R", "C"]}},
        {"method": "bdev_malloc_create", "params": {"name": "A", "num_blocks": 1024, "block_size": BS}},
        {"method": "bdev_malloc_create", "params": {"name": "B", "num_blocks": 2048, "block_size": BS}},
        {"method": "bdev_malloc_create", "params": {"name": "C", "num_blocks": 256, "block_size": BS}}]}]}
    with strata.World(seed=seed, config=config) as w:
        assert _raid(w, "R")["state"] == "online"
        assert _raid(w, "Z")["state"] == "online"  # a raid on a raid
        assert w.bdev("Z").num_blocks == 1024 + 256
        uuid = w.bdev("R").info()["uuid"]
        saved = w.rpc("save_config")
        assert w.rpc("bdev_raid_get_bdevs", category="configuring") == []
    bdev_cfg = [s for s in saved["subsystems"] if s["subsystem"] == "bdev"][0]["config"]
    raids = [e for e in bdev_cfg if e["method"] == "bdev_raid_create"]
    assert [e["params"]["name"] for e in raids] == ["R", "Z"]
    assert raids[0]["params"]["raid_level"] == "raid1" and raids[0]["params"]["uuid"] == uuid
    with strata.World(seed=seed, config=saved) as w2:
        assert _raid(w2, "R")["state"] == "online" and w2.bdev("R").info()["uuid"] == uuid
        assert w2.bdev("Z").num_blocks == 1024 + 256


def test_configuring_until_members_appear(world):
    world.rpc("bdev_raid_create", name="Later", raid_level="raid0", strip_size_kb=8, base_bdevs=["X0", "X1"])
    assert [r["name"] for r in world.rpc("bdev_raid_get_bdevs", category="configuring")] == ["Later"]
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_get_bdevs", name="Later")
    _malloc(world, "X1", 64)
    assert _raid(world, "Later")["num_base_bdevs_discovered"] == 1
    _malloc(world, "X0", 64)
    assert world.rpc("bdev_raid_get_bdevs", category="online")[0]["name"] == "Later"
    assert world.bdev("Later").num_blocks == 128
    # raid0 without a member cannot serve: offline until deleted.
    world.rpc("bdev_malloc_delete", name="X0")
    assert _raid(world, "Later")["state"] == "offline"
    assert world.rpc("bdev_raid_delete", name="Later") is True


def test_rpc_errors_are_clear(world):
    _malloc(world, "E0", 64)
    _malloc(world, "E1", 64)
    cases = [
        (dict(name="R", raid_level="raid0", strip_size_kb=4, base_bdevs=["E0", "E1"], superblock=True),
         "superblock is not supported"),
        (dict(name="R", raid_level="raid5f", strip_size_kb=4, base_bdevs=["E0", "E1"]), "raid_level"),
        (dict(name="R", raid_level="raid0", base_bdevs=["E0", "E1"]), "strip_size_kb"),
        (dict(name="R", raid_level="raid0", strip_size_kb=3, base_bdevs=["E0", "E1"]), "power of two"),
        (dict(name="R", raid_level="raid1", strip_size_kb=64, base_bdevs=["E0", "E1"]), "raid1 has no strip"),
        (dict(name="R", raid_level="raid1", base_bdevs=["E0"]), "base bdevs"),
        (dict(name="R", raid_level="raid0", strip_size_kb=4, base_bdevs=["E0", "E0"]), "listed twice"),
        (dict(name="R", raid_level="raid0", strip_size_kb=4, base_bdevs=[1, 2]), "array of bdev names"),
        (dict(name="E0", raid_level="raid0", strip_size_kb=4, base_bdevs=["E1"]), "already exists"),
    ]
    for params, match in cases:
        with pytest.raises(RpcError, match=match):
            world.rpc("bdev_raid_create", **params)
    assert world.rpc("bdev_raid_get_bdevs", category="all") == []
    world.rpc("bdev_raid_create", name="R", raid_level="raid0", strip_size_kb=4, base_bdevs=["E0", "E1"])
    _malloc(world, "E2", 64)
    with pytest.raises(RpcError, match="only raid1"):
        world.rpc("bdev_raid_add_base_bdev", raid_bdev="R", base_bdev="E2")
    with pytest.raises(RpcError, match="already a member"):
        world.rpc("bdev_raid_create", name="R2", raid_level="raid0", strip_size_kb=4, base_bdevs=["E1"])
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_raid_delete", name="Nope")
    with pytest.raises(RpcError, match="not a member"):
        world.rpc("bdev_raid_remove_base_bdev", name="E2")
    with pytest.raises(RpcError, match="category"):
        world.rpc("bdev_raid_get_bdevs", category="broken")
    with pytest.raises(RpcError, match="already a member"):
        world.rpc("bdev_raid_create", name="R3", raid_level="1", base_bdevs=["E2", "E0"])
    world.rpc("bdev_raid_create", name="R3", raid_level="1", base_bdevs=["E2", "R"])
    _malloc(world, "E3", 64)
    with pytest.raises(RpcError, match="no empty slot"):
        world.rpc("bdev_raid_add_base_bdev", raid_bdev="R3", base_bdev="E3")
