"""Logical volumes from RPCs on the simulator: snapshot/clone data correctness on a malloc base,
thin vs thick allocation, and an lvstore on an emulated NVMe SSD (namespace media in a file)
surviving a clean restart: save_config holds only the base, examine brings the lvols back."""

import random

import pytest

import strata
from strata import RpcError

ADDR = "0000:06:00.0"
BS = 512
MIB_BLOCKS = (1 << 20) // BS


def blocks(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n * BS))


def lvol_info(world, name):
    return world.bdev(name).info()["driver_specific"]["lvol"]


def test_snapshot_and_clone_data(world, seed):
    rng = random.Random(seed)
    world.rpc("bdev_malloc_create", name="Malloc0", num_blocks=64 * MIB_BLOCKS, block_size=BS)
    lvs = world.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc0", lvs_name="lvs0", cluster_sz=1 << 20)
    assert world.rpc("bdev_lvol_get_lvstores", uuid=lvs)[0]["name"] == "lvs0"
    world.rpc("bdev_lvol_create", lvol_name="vol", size_in_mib=8, thin_provision=True, lvs_name="lvs0")
    vol = world.bdev("lvs0/vol")

    # A random set of writes, remembered, then a snapshot of them.
    image = {}
    for _ in range(20):
        off = rng.randrange(0, 8 * MIB_BLOCKS - 8)
        data = blocks(rng, 8)
        vol.write(off, data)
        for i in range(8):
            image[off + i] = data[i * BS:(i + 1) * BS]
    world.rpc("bdev_lvol_snapshot", lvol_name="lvs0/vol", snapshot_name="snap")
    world.rpc("bdev_lvol_clone", snapshot_name="lvs0/snap", clone_name="clone")
    clone, snap = world.bdev("lvs0/clone"), world.bdev("lvs0/snap")
    assert sorted(lvol_info(world, "lvs0/snap")["clones"]) == ["clone", "vol"]
    assert lvol_info(world, "lvs0/clone")["base_snapshot"] == "snap"

    # Overwrite in the clone and in the origin: the snapshot keeps the old data.
    for _ in range(10):
        off = rng.choice(sorted(image))
        clone.write(off, blocks(rng, 1))
        vol.write(off, blocks(rng, 1))
    for off, data in image.items():
        assert snap.read(off, 1) == data
    with pytest.raises(strata.bdev.BdevIoError):
        snap.write(0, bytes(BS))

    # Deleting the snapshot needs one clone at most; inflating the clone frees it.
    with pytest.raises(RpcError, match="clones"):
        world.rpc("bdev_lvol_delete", name="lvs0/snap")
    before = {off: clone.read(off, 1) for off in image}
    world.rpc("bdev_lvol_inflate", name="lvs0/clone")
    assert lvol_info(world, "lvs0/clone")["num_allocated_clusters"] == 8
    world.rpc("bdev_lvol_delete", name="lvs0/snap")
    assert {off: clone.read(off, 1) for off in image} == before


def test_thin_vs_thick_allocation(world):
    world.rpc("bdev_malloc_create", name="Malloc0", num_blocks=32 * MIB_BLOCKS, block_size=BS)
    world.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc0", lvs_name="lvs0", cluster_sz=1 << 20)
    free0 = world.rpc("bdev_lvol_get_lvstores")[0]["free_clusters"]
    world.rpc("bdev_lvol_create", lvol_name="thick", size_in_mib=4, lvs_name="lvs0")
    world.rpc("bdev_lvol_create", lvol_name="thin", size_in_mib=4, thin_provision=True, lvs_name="lvs0")
    assert world.rpc("bdev_lvol_get_lvstores")[0]["free_clusters"] == free0 - 4
    world.bdev("lvs0/thin").write(3 * MIB_BLOCKS, b"\x5a" * BS)
    assert lvol_info(world, "lvs0/thin")["num_allocated_clusters"] == 1
    assert lvol_info(world, "lvs0/thick")["num_allocated_clusters"] == 4
    assert world.rpc("bdev_lvol_get_lvstores")[0]["free_clusters"] == free0 - 5


def nvme_stack(world, backing):
    ns = {"nsid": 1, "num_blocks": 64 * MIB_BLOCKS, "block_size": BS, "backing_file": backing}
    world.rpc("sim_nvme_create", traddr=ADDR, namespaces=[ns])
    return world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR)


def test_lvstore_on_nvme_survives_restart(seed, tmp_path):
    rng = random.Random(seed)
    backing = str(tmp_path / "ns1.img")
    with strata.World(seed=seed) as w:
        assert nvme_stack(w, backing) == ["Nvme0n1"]
        lvs = w.rpc("bdev_lvol_create_lvstore", bdev_name="Nvme0n1", lvs_name="lvs0", cluster_sz=1 << 20)
        thick = w.rpc("bdev_lvol_create", lvol_name="thick", size_in_mib=4, lvs_name="lvs0")
        w.rpc("bdev_lvol_create", lvol_name="thin", size_in_mib=16, thin_provision=True, lvs_name="lvs0")
        a, b = blocks(rng, 16), blocks(rng, 16)
        w.bdev("lvs0/thick").write(100, a)
        w.bdev("lvs0/thin").write(5 * MIB_BLOCKS, b)
        w.rpc("bdev_lvol_snapshot", lvol_name="lvs0/thin", snapshot_name="snap")
        w.bdev("lvs0/thin").write(5 * MIB_BLOCKS, bytes(16 * BS))
        w.bdev("lvs0/thin").flush()
        w.bdev("lvs0/thick").flush()
        w.rpc("bdev_lvol_rename", old_name="lvs0/thick", new_name="renamed")
        saved = w.rpc("save_config")
    methods = [e["method"] for s in saved["subsystems"] for e in s["config"]]
    assert not any(m.startswith("bdev_lvol") for m in methods)  # on-disk state only

    with strata.World(seed=seed + 1, config=saved) as w2:
        # The lvstore loads asynchronously after the base registers; the saved config's own
        # bdev_wait_for_examine (a runtime method, run after the bdevs are created) waits for it.
        assert len(w2.rpc("bdev_lvol_get_lvols")) == 3
        assert w2.rpc("bdev_wait_for_examine") is True
        store = w2.rpc("bdev_lvol_get_lvstores")[0]
        assert (store["uuid"], store["name"], store["base_bdev"]) == (lvs, "lvs0", "Nvme0n1")
        assert w2.bdev(thick).info()["aliases"] == ["lvs0/renamed"]
        assert w2.bdev("lvs0/renamed").read(100, 16) == a
        assert w2.bdev("lvs0/snap").read(5 * MIB_BLOCKS, 16) == b
        assert w2.bdev("lvs0/thin").read(5 * MIB_BLOCKS, 16) == bytes(16 * BS)
        assert lvol_info(w2, "lvs0/thin")["base_snapshot"] == "snap"
        assert w2.bdev("Nvme0n1").info()["claimed"] is True


def test_thin_unmap_releases_clusters_and_clear_method(world, seed):
    rng = random.Random(seed)
    world.rpc("bdev_malloc_create", name="Malloc0", num_blocks=32 * MIB_BLOCKS, block_size=BS)
    world.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc0", lvs_name="lvs0", cluster_sz=1 << 20)
    free = lambda: world.rpc("bdev_lvol_get_lvstores")[0]["free_clusters"]  # noqa: E731
    free0 = free()
    world.rpc("bdev_lvol_create", lvol_name="thin", size_in_mib=4, thin_provision=True, lvs_name="lvs0")
    thin = world.bdev("lvs0/thin")
    data = blocks(rng, 4 * MIB_BLOCKS)
    thin.write(0, data)
    assert lvol_info(world, "lvs0/thin")["num_allocated_clusters"] == 4
    # Whole clusters 1 and 2 go back to the store; the halves of 0 and 3 stay allocated.
    thin.unmap(MIB_BLOCKS // 2, 3 * MIB_BLOCKS)
    assert lvol_info(world, "lvs0/thin")["num_allocated_clusters"] == 2
    assert free() == free0 - 2
    assert thin.read(MIB_BLOCKS, MIB_BLOCKS) == bytes(MIB_BLOCKS * BS)
    assert thin.read(0, MIB_BLOCKS // 2) == data[:MIB_BLOCKS // 2 * BS]
    assert thin.read(3 * MIB_BLOCKS + MIB_BLOCKS // 2, 8) == \
        data[(3 * MIB_BLOCKS + MIB_BLOCKS // 2) * BS:(3 * MIB_BLOCKS + MIB_BLOCKS // 2 + 8) * BS]

    # clear_method: what the base holds after the lvol is deleted.
    marks = {"none": 0xb2, "write_zeroes": 0xa1}
    for cm, v in marks.items():
        world.rpc("bdev_lvol_create", lvol_name=cm, size_in_mib=1, lvs_name="lvs0", clear_method=cm)
        world.bdev("lvs0/" + cm).write(0, bytes([v]) * (MIB_BLOCKS * BS))
    for cm in marks:  # both deleted before anything reuses their clusters
        world.rpc("bdev_lvol_delete", name="lvs0/" + cm)
    base = world.bdev("Malloc0").read(0, 32 * MIB_BLOCKS)
    held = {v: sum(base[i:i + BS] == bytes([v]) * BS for i in range(0, len(base), BS))
            for v in marks.values()}
    assert held == {0xb2: MIB_BLOCKS, 0xa1: 0}
    with pytest.raises(RpcError):
        world.rpc("bdev_lvol_create", lvol_name="x", size_in_mib=1, lvs_name="lvs0", clear_method="shred")


def test_esnap_clone_degraded_until_its_bdev_returns(seed, tmp_path):
    rng = random.Random(seed)
    backing = str(tmp_path / "ns1.img")
    ext = blocks(rng, 2 * MIB_BLOCKS)
    mine = blocks(rng, 8)
    with strata.World(seed=seed) as w:
        assert nvme_stack(w, backing) == ["Nvme0n1"]
        w.rpc("bdev_lvol_create_lvstore", bdev_name="Nvme0n1", lvs_name="lvs0", cluster_sz=1 << 20)
        w.rpc("bdev_malloc_create", name="Ext", num_blocks=2 * MIB_BLOCKS, block_size=BS)
        w.bdev("Ext").write(0, ext)
        u = w.rpc("bdev_lvol_clone_bdev", bdev="Ext", lvs_name="lvs0", clone_name="ec")
        info = [l for l in w.rpc("bdev_lvol_get_lvols") if l["name"] == "ec"][0]
        assert (info["is_esnap_clone"], info["is_degraded"], info["external_snapshot_name"]) == \
            (True, False, "Ext")
        ec = w.bdev("lvs0/ec")
        assert ec.read(0, 2 * MIB_BLOCKS) == ext
        ec.write(16, mine)
        ec.flush()
        assert w.bdev("Ext").read(16, 8) == ext[16 * BS:24 * BS]  # copy on write, Ext untouched
        saved = w.rpc("save_config")
    # Restart without Ext.
    for s in saved["subsystems"]:
        s["config"] = [e for e in s["config"] if e.get("params", {}).get("name") != "Ext"]
    with strata.World(seed=seed + 1, config=saved) as w2:
        assert w2.rpc("bdev_wait_for_examine") is True
        info = w2.rpc("bdev_lvol_get_lvols")[0]
        assert (info["name"], info["is_degraded"]) == ("ec", True)
        assert u not in [b["name"] for b in w2.rpc("bdev_get_bdevs")]
        w2.rpc("bdev_malloc_create", name="Ext", num_blocks=2 * MIB_BLOCKS, block_size=BS)
        w2.bdev("Ext").write(0, ext)
        assert w2.rpc("bdev_wait_for_examine") is True
        assert w2.rpc("bdev_lvol_get_lvols")[0]["is_degraded"] is False
        want = bytearray(ext)
        want[16 * BS:24 * BS] = mine
        assert w2.bdev(u).read(0, 2 * MIB_BLOCKS) == bytes(want)
        w2.rpc("bdev_lvol_delete", name="lvs0/ec")
        assert w2.rpc("bdev_lvol_get_lvols") == []


def test_grow_lvstore_with_its_base(seed, tmp_path):
    """SPDK's way to grow a store: enlarge the file under an aio bdev, bdev_aio_rescan, then
    bdev_lvol_grow_lvstore; the new clusters are free, the data stays, and it all survives a
    restart from save_config."""
    rng = random.Random(seed)
    path = tmp_path / "base.img"
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    with strata.World(seed=seed) as w:
        w.rpc("bdev_aio_create", name="F0", filename=str(path), block_size=BS)
        lvs = w.rpc("bdev_lvol_create_lvstore", bdev_name="F0", lvs_name="lvs0", cluster_sz=1 << 20)
        store = lambda: w.rpc("bdev_lvol_get_lvstores", uuid=lvs)[0]  # noqa: E731
        total0, free0 = store()["total_data_clusters"], store()["free_clusters"]
        # Nothing to grow yet: not an error.
        assert w.rpc("bdev_lvol_grow_lvstore", lvs_name="lvs0") is True
        assert store()["total_data_clusters"] == total0
        w.rpc("bdev_lvol_create", lvol_name="vol", size_in_mib=4, lvs_name="lvs0")
        vol = w.bdev("lvs0/vol")
        data = blocks(rng, 64)
        vol.write(100, data)
        vol.flush()

        with open(path, "r+b") as f:
            f.truncate(48 << 20)
        assert w.rpc("bdev_aio_rescan", name="F0") is True
        assert w.rpc("bdev_lvol_grow_lvstore", uuid=lvs) is True
        assert store()["total_data_clusters"] == total0 + 32
        assert store()["free_clusters"] == free0 - 4 + 32
        assert vol.read(100, 64) == data
        # The new clusters serve an lvol larger than the whole store was.
        w.rpc("bdev_lvol_create", lvol_name="big", size_in_mib=total0 + 8, lvs_name="lvs0")
        tail = blocks(rng, 8)
        big = w.bdev("lvs0/big")
        big.write((total0 + 8) * MIB_BLOCKS - 8, tail)
        big.flush()
        with pytest.raises(RpcError):
            w.rpc("bdev_lvol_grow_lvstore", lvs_name="nope")
        free1 = store()["free_clusters"]
        saved = w.rpc("save_config")
    with strata.World(seed=seed + 1, config=saved) as w2:
        assert w2.rpc("bdev_wait_for_examine") is True
        s = w2.rpc("bdev_lvol_get_lvstores", uuid=lvs)[0]
        assert (s["total_data_clusters"], s["free_clusters"]) == (total0 + 32, free1)
        assert w2.bdev("lvs0/vol").read(100, 64) == data
        assert w2.bdev("lvs0/big").read((total0 + 8) * MIB_BLOCKS - 8, 8) == tail


# ---- bdev_lvol_set_parent, bdev_lvol_set_parent_bdev, shallow copy (SPDK v24.09) -------------

def lvs_on_malloc(world, mib=32):
    world.rpc("bdev_malloc_create", name="Malloc0", num_blocks=mib * MIB_BLOCKS, block_size=BS)
    world.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc0", lvs_name="lvs0", cluster_sz=1 << 20)


def thin(world, name, mib=4, lvs="lvs0"):
    return world.rpc("bdev_lvol_create", lvol_name=name, size_in_mib=mib, thin_provision=True,
                     lvs_name=lvs)


def test_set_parent_keeps_own_clusters_reads_the_snapshot_and_survives_restart(seed, tmp_path):
    rng = random.Random(seed)
    backing = str(tmp_path / "ns1.img")
    with strata.World(seed=seed) as w:
        assert nvme_stack(w, backing) == ["Nvme0n1"]
        w.rpc("bdev_lvol_create_lvstore", bdev_name="Nvme0n1", lvs_name="lvs0", cluster_sz=1 << 20)
        thin(w, "origin")
        snapdata = blocks(rng, 4 * MIB_BLOCKS)
        w.bdev("lvs0/origin").write(0, snapdata)
        w.rpc("bdev_lvol_snapshot", lvol_name="lvs0/origin", snapshot_name="snap")
        thin(w, "vol")
        vol = w.bdev("lvs0/vol")
        mine = blocks(rng, MIB_BLOCKS)
        vol.write(2 * MIB_BLOCKS, mine)  # cluster 2 is the lvol's own
        assert w.rpc("bdev_lvol_set_parent", lvol_name="lvs0/vol", parent_name="lvs0/snap") is True
        want = bytearray(snapdata)
        want[2 * MIB_BLOCKS * BS:3 * MIB_BLOCKS * BS] = mine
        assert vol.read(0, 4 * MIB_BLOCKS) == bytes(want)
        info = lvol_info(w, "lvs0/vol")
        assert (info["clone"], info["base_snapshot"], info["num_allocated_clusters"]) == (True, "snap", 1)
        assert sorted(lvol_info(w, "lvs0/snap")["clones"]) == ["origin", "vol"]
        # A first write to a cluster it reads from the snapshot copies it; the snapshot stays.
        one = blocks(rng, 1)
        vol.write(MIB_BLOCKS + 10, one)
        want[(MIB_BLOCKS + 10) * BS:(MIB_BLOCKS + 11) * BS] = one
        assert vol.read(0, 4 * MIB_BLOCKS) == bytes(want)
        assert w.bdev("lvs0/snap").read(0, 4 * MIB_BLOCKS) == snapdata
        vol.flush()
        saved = w.rpc("save_config")
    with strata.World(seed=seed + 1, config=saved) as w2:
        assert w2.rpc("bdev_wait_for_examine") is True
        assert lvol_info(w2, "lvs0/vol")["base_snapshot"] == "snap"
        assert w2.bdev("lvs0/vol").read(0, 4 * MIB_BLOCKS) == bytes(want)


def assert_refused_leaving_vol_alone(world, method, cases):
    for lvol, parent, what in cases:
        with pytest.raises(RpcError, match=what):
            world.rpc(method, lvol_name=lvol, parent_name=parent)
    assert lvol_info(world, "lvs0/vol")["clone"] is False


def test_set_parent_refusals(world):
    lvs_on_malloc(world, mib=128)  # room for the metadata of ten lvols
    world.rpc("bdev_malloc_create", name="Malloc1", num_blocks=16 * MIB_BLOCKS, block_size=BS)
    world.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc1", lvs_name="lvs1", cluster_sz=1 << 20)
    thin(world, "origin")
    world.rpc("bdev_lvol_snapshot", lvol_name="lvs0/origin", snapshot_name="snap")
    world.rpc("bdev_lvol_create", lvol_name="thick", size_in_mib=4, lvs_name="lvs0")
    thin(world, "vol")
    thin(world, "big", mib=8)
    thin(world, "ro")
    world.rpc("bdev_lvol_set_read_only", name="lvs0/ro")
    thin(world, "other", lvs="lvs1")
    world.rpc("bdev_lvol_snapshot", lvol_name="lvs1/other", snapshot_name="osnap")
    # A read-only thin lvol cloned, the clone snapshotted: that snapshot descends from it.
    thin(world, "root")
    world.rpc("bdev_lvol_set_read_only", name="lvs0/root")
    world.rpc("bdev_lvol_clone", snapshot_name="lvs0/root", clone_name="child")
    world.rpc("bdev_lvol_snapshot", lvol_name="lvs0/child", snapshot_name="grandchild")
    cases = [
        ("lvs0/root", "lvs0/grandchild", "parent loop"),
        ("lvs0/nope", "lvs0/snap", "not found"),
        ("lvs0/vol", "lvs0/nope", "not found"),
        ("lvs0/thick", "lvs0/snap", "not thin"),
        ("lvs0/vol", "lvs0/ro", "not a snapshot"),  # read-only, but nobody's snapshot
        ("lvs0/vol", "lvs0/vol", "own parent"),
        ("lvs0/big", "lvs0/snap", "sizes must match"),
        ("lvs0/origin", "lvs0/snap", "already the parent"),
        ("lvs0/vol", "lvs1/osnap", "another lvstore"),
    ]
    assert_refused_leaving_vol_alone(world, "bdev_lvol_set_parent", cases)


def test_set_parent_bdev_reads_the_bdev_and_back_to_a_snapshot(world, seed):
    rng = random.Random(seed)
    lvs_on_malloc(world)
    world.rpc("bdev_malloc_create", name="Ext", num_blocks=4 * MIB_BLOCKS, block_size=BS)
    ext = blocks(rng, 4 * MIB_BLOCKS)
    world.bdev("Ext").write(0, ext)
    thin(world, "vol")
    vol = world.bdev("lvs0/vol")
    mine = blocks(rng, 8)
    vol.write(MIB_BLOCKS, mine)
    assert world.rpc("bdev_lvol_set_parent_bdev", lvol_name="lvs0/vol", parent_name="Ext") is True
    info = [l for l in world.rpc("bdev_lvol_get_lvols") if l["name"] == "vol"][0]
    assert (info["is_esnap_clone"], info["is_clone"], info["external_snapshot_name"]) == \
        (True, True, "Ext")
    want = bytearray(ext)
    want[MIB_BLOCKS * BS:MIB_BLOCKS * BS + len(mine)] = mine
    # Cluster 1 is the lvol's own: the rest of it reads zeroes, not Ext.
    want[MIB_BLOCKS * BS + len(mine):2 * MIB_BLOCKS * BS] = bytes(MIB_BLOCKS * BS - len(mine))
    assert vol.read(0, 4 * MIB_BLOCKS) == bytes(want)
    vol.write(3 * MIB_BLOCKS, mine)  # copy on write: Ext stays
    assert world.bdev("Ext").read(0, 4 * MIB_BLOCKS) == ext
    want[3 * MIB_BLOCKS * BS:3 * MIB_BLOCKS * BS + len(mine)] = mine

    # Then a snapshot of the same size as parent: the external snapshot is dropped.
    thin(world, "origin")
    snapdata = blocks(rng, 4 * MIB_BLOCKS)
    world.bdev("lvs0/origin").write(0, snapdata)
    world.rpc("bdev_lvol_snapshot", lvol_name="lvs0/origin", snapshot_name="snap")
    world.rpc("bdev_lvol_set_parent", lvol_name="lvs0/vol", parent_name="lvs0/snap")
    info = [l for l in world.rpc("bdev_lvol_get_lvols") if l["name"] == "vol"][0]
    assert (info["is_esnap_clone"], info["base_snapshot"]) == (False, "snap")
    for c in (0, 2):
        assert vol.read(c * MIB_BLOCKS, MIB_BLOCKS) == \
            snapdata[c * MIB_BLOCKS * BS:(c + 1) * MIB_BLOCKS * BS]
    for c in (1, 3):
        assert vol.read(c * MIB_BLOCKS, MIB_BLOCKS) == \
            bytes(want[c * MIB_BLOCKS * BS:(c + 1) * MIB_BLOCKS * BS])


def test_set_parent_bdev_refusals(world):
    lvs_on_malloc(world)
    world.rpc("bdev_malloc_create", name="Ext", num_blocks=4 * MIB_BLOCKS, block_size=BS)
    world.rpc("bdev_malloc_create", name="Odd", num_blocks=4 * MIB_BLOCKS - 8, block_size=BS)
    world.rpc("bdev_malloc_create", name="Big4k", num_blocks=1024, block_size=4096)
    world.rpc("bdev_lvol_create", lvol_name="thick", size_in_mib=4, lvs_name="lvs0")
    thin(world, "vol")
    thin(world, "ec")
    world.rpc("bdev_lvol_set_parent_bdev", lvol_name="lvs0/ec", parent_name="Ext")
    cases = [
        ("lvs0/nope", "Ext", "not found"),
        ("lvs0/vol", "Nope", "not found"),
        ("lvs0/thick", "Ext", "not thin"),
        ("lvs0/vol", "Odd", "not a multiple of the cluster size"),
        ("lvs0/vol", "Big4k", "block size"),
        ("lvs0/vol", "Malloc0", "own base"),
        ("lvs0/vol", "lvs0/thick", "an lvol of lvstore"),
        ("lvs0/ec", "Ext", "already the external snapshot"),
    ]
    assert_refused_leaving_vol_alone(world, "bdev_lvol_set_parent_bdev", cases)


def wait_copy(world, op):
    for _ in range(1000):
        s = world.rpc("bdev_lvol_check_shallow_copy", operation_id=op)
        if s["state"] != "in progress":
            return s
        world.advance(1_000_000)
    raise AssertionError("shallow copy %d never finished" % op)


def test_shallow_copy_writes_only_the_lvols_own_clusters(world, seed):
    rng = random.Random(seed)
    lvs_on_malloc(world)
    thin(world, "vol")
    vol = world.bdev("lvs0/vol")
    old = blocks(rng, 4 * MIB_BLOCKS)
    vol.write(0, old)
    world.rpc("bdev_lvol_snapshot", lvol_name="lvs0/vol", snapshot_name="snap")
    own = {0: blocks(rng, MIB_BLOCKS), 2: blocks(rng, MIB_BLOCKS)}
    for c, d in own.items():
        vol.write(c * MIB_BLOCKS, d)
    world.rpc("bdev_lvol_set_read_only", name="lvs0/vol")
    world.rpc("bdev_malloc_create", name="Dst", num_blocks=5 * MIB_BLOCKS, block_size=BS)
    world.bdev("Dst").write(0, b"\xee" * (5 * MIB_BLOCKS * BS))
    r = world.rpc("bdev_lvol_start_shallow_copy", src_lvol_name="lvs0/vol", dst_bdev_name="Dst")
    assert set(r) == {"operation_id"}
    s = wait_copy(world, r["operation_id"])
    assert s == {"state": "complete", "copied_clusters": 2, "total_clusters": 2}, s
    dst = world.bdev("Dst")
    for c in range(5):
        got = dst.read(c * MIB_BLOCKS, MIB_BLOCKS)
        assert got == own.get(c, b"\xee" * (MIB_BLOCKS * BS)), "cluster %d" % c
    assert dst.info()["claimed"] is False  # released after the copy
    with pytest.raises(RpcError, match="not found"):  # reported once, then forgotten
        world.rpc("bdev_lvol_check_shallow_copy", operation_id=r["operation_id"])


def test_shallow_copy_refusals(world):
    lvs_on_malloc(world)
    thin(world, "rw")
    world.bdev("lvs0/rw").write(0, b"\x11" * BS)
    thin(world, "ro", mib=4)
    world.bdev("lvs0/ro").write(3 * MIB_BLOCKS, b"\x22" * BS)
    world.rpc("bdev_lvol_set_read_only", name="lvs0/ro")
    world.rpc("bdev_malloc_create", name="Dst", num_blocks=4 * MIB_BLOCKS, block_size=BS)
    world.rpc("bdev_malloc_create", name="Small", num_blocks=2 * MIB_BLOCKS, block_size=BS)
    for src, dst, what in [("lvs0/nope", "Dst", "not found"), ("lvs0/ro", "Nope", "not found"),
                           ("lvs0/ro", "Malloc0", "claimed")]:
        with pytest.raises(RpcError, match=what):
            world.rpc("bdev_lvol_start_shallow_copy", src_lvol_name=src, dst_bdev_name=dst)
    # As SPDK: these start, and the copy ends in error.
    for src, dst, what in [("lvs0/rw", "Dst", "read-only"), ("lvs0/ro", "Small", "smaller")]:
        op = world.rpc("bdev_lvol_start_shallow_copy", src_lvol_name=src,
                       dst_bdev_name=dst)["operation_id"]
        s = wait_copy(world, op)
        assert s["state"] == "error" and what in s["error"], s
        assert s["copied_clusters"] == 0
        assert world.bdev(dst).info()["claimed"] is False
    assert world.bdev("Small").read(0, 8) == bytes(8 * BS)
    with pytest.raises(RpcError, match="not found"):
        world.rpc("bdev_lvol_check_shallow_copy", operation_id=12345)
