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
