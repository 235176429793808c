"""Worlds share nothing; identifiers and traces replay from the seed alone.

Two strata.World objects in one process are two hosts: each owns its bdevs, lvol stores,
emulated PCI bus, DMA memory and IOVA map (runtime::Host), so the same names, the same PCI
addresses and different data live side by side, and either may shut down first. A seed replayed
in a fresh process gives the same UUIDs and the same trace hash as inside this full run, and the
trace hash notices a different interleaving or one different data byte."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import strata

ADDR = "0000:01:00.0"


def make_bdevs(w, fill):
    w.rpc("bdev_malloc_create", name="Malloc0", num_blocks=16384, block_size=512)
    w.rpc("bdev_null_create", name="Null0", num_blocks=1024, block_size=512)
    w.rpc("bdev_split_create", base_bdev="Malloc0", split_count=2)
    w.rpc("bdev_malloc_create", name="Malloc1", num_blocks=256, block_size=512)
    w.rpc("bdev_raid_create", name="Raid0", raid_level="raid1", base_bdevs=["Malloc1", "Null0"])
    w.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc0p1", lvs_name="lvs",
          cluster_sz=1 << 20)
    w.rpc("bdev_lvol_create", lvs_name="lvs", lvol_name="vol", size_in_mib=1)
    w.bdev("Malloc0p0").write(0, bytes([fill]) * 512)


def names(w):
    # An lvol bdev's name is its (random) UUID: compare it by its alias.
    return sorted(b["aliases"][0] if b.get("aliases") else b["name"]
                  for b in w.rpc("bdev_get_bdevs"))


@pytest.mark.parametrize("first_to_close", [0, 1])
def test_two_worlds_same_names_independent_state(seed, first_to_close):
    worlds = [strata.World(seed=seed), strata.World(seed=seed + 1)]
    try:
        for i, w in enumerate(worlds):
            make_bdevs(w, fill=0x11 * (i + 1))
        # Same names in both, yet each World's data and config are its own.
        assert names(worlds[0]) == names(worlds[1])
        assert worlds[0].bdev("Malloc0p0").read(0, 1) == bytes([0x11]) * 512
        assert worlds[1].bdev("Malloc0p0").read(0, 1) == bytes([0x22]) * 512
        worlds[1].rpc("bdev_malloc_create", name="OnlyInOne", num_blocks=64, block_size=512)
        assert "OnlyInOne" not in names(worlds[0])
        saved = [w.rpc("save_config") for w in worlds]
        assert saved[0] != saved[1]
        # Deleting in one World leaves the other's objects of the same name alone.
        worlds[0].rpc("bdev_lvol_delete_lvstore", lvs_name="lvs")
        assert worlds[1].rpc("bdev_lvol_get_lvstores")[0]["name"] == "lvs"
        saved[0] = worlds[0].rpc("save_config")
        worlds[first_to_close].close()
        survivor = 1 - first_to_close
        other = worlds[survivor]
        assert other.bdev("Malloc0p0").read(0, 1) == bytes([0x11 * (survivor + 1)]) * 512
        assert other.rpc("save_config") == saved[survivor]
    finally:
        for w in worlds:
            w.close()


def test_two_worlds_each_with_their_own_nvme_at_one_address(seed):
    a, b = strata.World(seed=seed), strata.World(seed=seed)
    try:
        for w, fill in ((a, 0xA5), (b, 0x5A)):
            w.rpc("sim_nvme_create", traddr=ADDR,
                  namespaces=[{"nsid": 1, "num_blocks": 2048, "block_size": 512}])
            w.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR)
            w.bdev("Nvme0n1").write(0, bytes([fill]) * 512)
        assert a.bdev("Nvme0n1").read(0, 1) == bytes([0xA5]) * 512
        assert b.bdev("Nvme0n1").read(0, 1) == bytes([0x5A]) * 512
        a.rpc("bdev_nvme_detach_controller", name="Nvme0")
        a.rpc("sim_nvme_delete", traddr=ADDR)
        assert b.bdev("Nvme0n1").read(0, 1) == bytes([0x5A]) * 512
    finally:
        b.close()
        a.close()


def uuids_and_hash(w):
    make_bdevs(w, fill=0x33)
    w.bdev("Raid0").write(3, b"\x77" * 512)
    w.bdev("Raid0").read(3, 1)
    ids = {b["name"]: b["uuid"] for b in w.rpc("bdev_get_bdevs")}
    ids["lvs"] = w.rpc("bdev_lvol_get_lvstores")[0]["uuid"]
    return ids, w.trace_hash(), w.event_count()


_CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = json.loads(sys.argv[2])
    import strata
    sys.path.insert(0, %r)
    from test_world_isolation import uuids_and_hash
    with strata.World(seed=int(sys.argv[1])) as w:
        ids, h, n = uuids_and_hash(w)
    print(json.dumps({"ids": ids, "hash": h, "events": n}))
""") % os.path.dirname(os.path.abspath(__file__))


def replay_in_fresh_process(seed):
    out = subprocess.run([sys.executable, "-c", _CHILD, str(seed), json.dumps(sys.path)],
                         check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_seed_replayed_alone_gives_the_same_uuids_and_trace(seed):
    # Other Worlds first, so this one runs "inside a full pytest run".
    with strata.World(seed=seed + 7) as noise:
        make_bdevs(noise, fill=1)
    with strata.World(seed=seed) as w:
        ids, h, n = uuids_and_hash(w)
    assert len(set(ids.values())) == len(ids), "UUIDs must be unique"
    assert n > 0, "the stack recorded no events"
    child = replay_in_fresh_process(seed)
    assert child["ids"] == ids
    assert child["hash"] == h
    assert child["events"] == n
    other = replay_in_fresh_process(seed + 1)
    assert other["ids"] != ids, "UUIDs must come from the seed, not a fixed sequence"


def test_trace_hash_notices_one_data_byte(seed):
    def run(byte):
        with strata.World(seed=seed) as w:
            w.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
            w.bdev("M").write(0, bytes([byte]) * 512)
            assert w.bdev("M").read(0, 1) == bytes([byte]) * 512
            return w.trace_hash(), w.event_hash()
    a, b, c = run(1), run(1), run(2)
    assert a == b
    assert c[1] != a[1], "the read data's checksum must be in the event hash"
    assert c[0] != a[0]


def test_trace_hash_notices_an_rpc_reply_and_a_perturbed_step(seed):
    def run(perturb, name="M"):
        with strata.World(seed=seed, reactors=2) as w:
            for i in range(3):
                w.create_thread("w%d" % i, reactor=i % 2)
            if perturb:
                w.perturb_next_choice()
            w.post_marks(["w0", "w1", "w2"], 4)
            w.rpc("bdev_malloc_create", name=name, num_blocks=64, block_size=512)
            w.run_until_idle()
            return w.trace_hash(), w.event_hash()
    base = run(False)
    assert run(False) == base
    assert run(True)[0] != base[0], "a different interleaving must change the trace hash"
    assert run(False, name="N")[1] != base[1], "a different RPC reply must change the events"


def test_device_commands_are_in_the_trace(seed):
    with strata.World(seed=seed) as w:
        w.rpc("sim_nvme_create", traddr=ADDR,
              namespaces=[{"nsid": 1, "num_blocks": 2048, "block_size": 512}])
        w.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
        w.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR)
        assert w.event_count("device_cmd") > 0, "attaching ran admin commands"
        before = (w.event_count("device_cmd"), w.event_count("bdev_io"))
        w.bdev("M").write(0, b"\x01" * 512)
        assert w.event_count("bdev_io") >= before[1] + 1  # (+ examine's reads, if still going)
        w.bdev("Nvme0n1").write(0, b"\x01" * 512)
        # The model's write, and the I/O queue created and deleted for the Python channel.
        assert w.event_count("device_cmd") > before[0]
        assert w.event_count("bdev_io") >= before[1] + 2
        w.rpc("bdev_get_bdevs")
        assert w.event_count("rpc_reply") > 0
        with pytest.raises(ValueError, match="unknown event kind"):
            w.event_count("nope")
