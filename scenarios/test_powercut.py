"""Power cuts under logical volumes on an emulated NVMe SSD (issue 8, "Power-cut testing").

An lvstore on an emulated namespace whose media is a file runs a seeded workload through the
lvol RPCs and the bdev API (create thick/thin, write + flush, snapshot, clone, resize, inflate,
delete) with a `power_cut` fault rule (plain or torn) on its n-th Write. The SSD loses its
write cache and the driver resets it (resending the commands the reset aborted, which then
succeed); the host keeps running. The blobstore learns of the loss from the bdev and stops:
the operation in flight fails, and the unload at the end leaves the store dirty, as a crash
would (docs/design/blobstore.md, rule 8). A new World restarted from the
saved config (only the base: examine finds the store on the file) must then show every
acknowledged lvol with its flushed data, the interrupted one either whole or absent, and
consistent cluster accounting. The batched variant sends two lvol RPCs per JSON-RPC batch,
which the server runs at once (their metadata writes interleave; the cut may fail one and not
the other). Python's bdev I/O is synchronous, so data writes are not concurrent here; the
GoogleTest is where they are. The exhaustive host-crash version is
core/blob/tests/blob_powercut_test.cpp (docs/design/blobstore.md, "Power-cut testing")."""

import json
import random

import pytest

import strata
from strata import RpcError
from strata.bdev import BdevIoError

ADDR = "0000:07:00.0"
BS = 512
MIB_BLOCKS = (1 << 20) // BS
CUT_POINTS = [2, 5, 9, 14, 20, 27, 35, 44]


def nvme_stack(world, backing):
    ns = {"nsid": 1, "num_blocks": 64 * MIB_BLOCKS, "block_size": BS, "backing_file": backing}
    world.rpc("sim_nvme_create", traddr=ADDR, namespaces=[ns], write_latency_us=5)
    return world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR)


def wait_for(world, pred, ns=2_000_000_000):
    for _ in range(200):
        if pred():
            return True
        world.advance(ns // 200)
    return pred()


def pattern(tag, n):
    return bytes((tag * 37 + i) & 0xFF for i in range(n * BS))


class Workload:
    """Runs operations until one fails (the cut); `acked` is what must survive."""

    def __init__(self, world, rng):
        self.w, self.rng = world, rng
        self.acked = {}      # lvol name -> {"size_mib", "parent", "data": {lba: bytes}}
        self.inflight = None  # name of the lvol the failed operation was about
        self.inflight_write = None  # (lvol, lba, data) of a write + flush that failed
        self.serial = 0

    def writable(self):
        return [n for n, v in self.acked.items() if not v["snapshot"]]

    def step(self):
        w, rng = self.w, self.rng
        self.serial += 1
        kind = rng.choice(["create", "create", "write", "write", "write", "snapshot", "clone",
                           "resize", "inflate", "delete"])
        name = "v%d" % self.serial
        if kind == "create" or not self.acked:
            size = rng.randint(1, 4)
            thin = rng.random() < 0.5
            self.inflight = name
            w.rpc("bdev_lvol_create", lvol_name=name, size_in_mib=size, thin_provision=thin,
                  lvs_name="lvs0")
            self.acked[name] = {"size_mib": size, "snapshot": False, "data": {}}
        elif kind == "write" and self.writable():
            target = rng.choice(self.writable())
            v = self.acked[target]
            lba = rng.randrange(v["size_mib"] * MIB_BLOCKS - 16)
            data = pattern(self.serial, 16)
            self.inflight = target
            self.inflight_write = (target, lba, data)
            d = w.bdev("lvs0/" + target)
            d.write(lba, data)
            d.flush()
            self.inflight_write = None
            # Later writes may overlap: keep only what the newest write says.
            v["data"] = {k: b for k, b in v["data"].items() if abs(k - lba) >= 16}
            v["data"][lba] = data
        elif kind == "snapshot" and self.writable():
            origin = rng.choice(self.writable())
            self.inflight = name
            w.rpc("bdev_lvol_snapshot", lvol_name="lvs0/" + origin, snapshot_name=name)
            o = self.acked[origin]
            self.acked[name] = {"size_mib": o["size_mib"], "snapshot": True, "data": dict(o["data"])}
        elif kind == "clone":
            snaps = [n for n, v in self.acked.items() if v["snapshot"]]
            if not snaps:
                return
            snap = rng.choice(snaps)
            self.inflight = name
            w.rpc("bdev_lvol_clone", snapshot_name="lvs0/" + snap, clone_name=name)
            s = self.acked[snap]
            self.acked[name] = {"size_mib": s["size_mib"], "snapshot": False, "data": dict(s["data"])}
        elif kind == "resize" and self.writable():
            target = rng.choice(self.writable())
            v = self.acked[target]
            size = v["size_mib"] + 1
            self.inflight = target
            w.rpc("bdev_lvol_resize", name="lvs0/" + target, size_in_mib=size)
            v["size_mib"] = size
        elif kind == "inflate" and self.writable():
            target = rng.choice(self.writable())
            self.inflight = target
            try:
                w.rpc("bdev_lvol_inflate", name="lvs0/" + target)
            except RpcError as e:
                if "parent" not in str(e):  # an lvol without a parent cannot be inflated
                    raise
        elif kind == "delete":
            leaves = [n for n in self.acked
                      if not self.acked[n]["snapshot"] and n != self.inflight]
            if not leaves:
                return
            target = rng.choice(leaves)
            self.inflight = target
            w.rpc("bdev_lvol_delete", name="lvs0/" + target)
            del self.acked[target]
        self.inflight = None

    def uncertain(self):
        """Lvols whose failed operation may or may not have happened."""
        return {self.inflight} if self.inflight else set()


class BatchedError(Exception):
    pass


class BatchedWorkload(Workload):
    """Two independent lvol RPCs per JSON-RPC batch (run at once by the server), or a write +
    flush. `failed` holds the lvols an RPC that failed was about."""

    def __init__(self, world, rng):
        super().__init__(world, rng)
        self.failed = set()

    def uncertain(self):
        return super().uncertain() | self.failed

    def _one(self, used):
        """One request (method, params, lvol it is about, apply-on-success) or None."""
        rng = self.rng
        self.serial += 1
        name = "v%d" % self.serial
        kind = rng.choice(["create", "snapshot", "clone", "resize", "delete"])
        if len(self.acked) >= 10:  # the store's blob ids run out near 16
            kind = rng.choice(["resize", "delete"])
        writable = [n for n in self.writable() if n not in used]
        snaps = [n for n, v in self.acked.items() if v["snapshot"] and n not in used]
        if kind == "snapshot" and writable:
            origin = rng.choice(writable)
            used.add(origin)

            def apply():
                o = self.acked[origin]
                self.acked[name] = {"size_mib": o["size_mib"], "snapshot": True, "data": dict(o["data"])}
            return "bdev_lvol_snapshot", {"lvol_name": "lvs0/" + origin, "snapshot_name": name}, name, apply
        if kind == "clone" and snaps:
            snap = rng.choice(snaps)
            used.add(snap)

            def apply():
                v = self.acked[snap]
                self.acked[name] = {"size_mib": v["size_mib"], "snapshot": False, "data": dict(v["data"])}
            return "bdev_lvol_clone", {"snapshot_name": "lvs0/" + snap, "clone_name": name}, name, apply
        if kind == "resize" and writable:
            target = rng.choice(writable)
            used.add(target)
            size = self.acked[target]["size_mib"] + 1

            def apply():
                self.acked[target]["size_mib"] = size
            return "bdev_lvol_resize", {"name": "lvs0/" + target, "size_in_mib": size}, target, apply
        if kind == "delete" and len(writable) > 1:
            target = rng.choice(writable)
            used.add(target)

            def apply():
                del self.acked[target]
            return "bdev_lvol_delete", {"name": "lvs0/" + target}, target, apply
        size, thin = rng.randint(1, 3), rng.random() < 0.5

        def apply():
            self.acked[name] = {"size_mib": size, "snapshot": False, "data": {}}
        return ("bdev_lvol_create", {"lvol_name": name, "size_in_mib": size, "thin_provision": thin,
                                     "lvs_name": "lvs0"}, name, apply)

    def step(self):
        if self.acked and self.rng.random() < 0.3:
            self.serial += 1
            target = self.rng.choice(self.writable()) if self.writable() else None
            if target is None:
                return
            v = self.acked[target]
            lba = self.rng.randrange(v["size_mib"] * MIB_BLOCKS - 16)
            data = pattern(self.serial, 16)
            self.inflight = target
            self.inflight_write = (target, lba, data)
            d = self.w.bdev("lvs0/" + target)
            d.write(lba, data)
            d.flush()
            self.inflight_write = None
            v["data"] = {k: b for k, b in v["data"].items() if abs(k - lba) >= 16}
            v["data"][lba] = data
            self.inflight = None
            return
        used = set()
        reqs = [self._one(used), self._one(used)]
        text = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                           for i, (m, p, _, _) in enumerate(reqs)])
        out = self.w.request_all(text)
        responses = out[0] if len(out) == 1 and isinstance(out[0], list) else out
        by_id = {r["id"]: r for r in responses}
        assert set(by_id) == {0, 1}, responses
        failed = False
        for i, (_, _, about, apply) in enumerate(reqs):
            if "result" in by_id[i]:
                apply()
            else:
                self.failed.add(about)
                failed = True
        if failed:
            raise BatchedError(str([by_id[i].get("error") for i in (0, 1)]))


# Seeds that failed once, replayed on every run (the `seed` fixture draws a fresh one each time).
REGRESSIONS = [
    # The SSD's power loss went unnoticed: the driver's reset resent the cut write, the flush
    # after it succeeded, and an inflate was acknowledged although its first cluster's copy was
    # lost with the write cache ("v1: flushed data at LBA 403 lost"). The blobstore now stops
    # (docs/design/blobstore.md, rule 8).
    (2704980478701686620, 35, False),
    # Then a delete failed with its tombstone on disk after all, its blob did not reopen, and
    # lvol kept the closed blob: a use after free in the next bdev_lvol_get_lvols.
    (1, 9, False),
    # Found by CI's seed swarm (ci/swarm): the cut failed a write + flush overlapping a flushed
    # record, the write's blocks reached the media anyway, and the check called the record lost.
    # The test's model was wrong, not Strata: an in-flight write's blocks may hold either value.
    (5924671078906346335, 9, False),
]


@pytest.mark.parametrize("regression_seed,nth,torn", REGRESSIONS,
                         ids=["%d-%d-%s" % (s, n, "torn" if t else "plain") for s, n, t in REGRESSIONS])
def test_lvols_survive_power_cut_regressions(tmp_path, regression_seed, nth, torn):
    run_power_cut(regression_seed, tmp_path, nth, torn, Workload)


@pytest.mark.parametrize("torn", [False, True], ids=["plain", "torn"])
@pytest.mark.parametrize("nth", CUT_POINTS)
def test_lvols_survive_power_cut(seed, tmp_path, nth, torn):
    run_power_cut(seed, tmp_path, nth, torn, Workload)


@pytest.mark.parametrize("torn", [False, True], ids=["plain", "torn"])
@pytest.mark.parametrize("nth", CUT_POINTS)
def test_lvols_survive_power_cut_batched(seed, tmp_path, nth, torn):
    run_power_cut(seed, tmp_path, nth, torn, BatchedWorkload)


def check_blocks(name, got, lba, data, pending):
    """Each block reads as its flushed data, or as the failed in-flight write's (it was sent, so
    it may have reached the media before the cut)."""
    if got == data:
        return
    for i in range(len(data) // BS):
        b, gb = lba + i, got[i * BS:(i + 1) * BS]
        if gb == data[i * BS:(i + 1) * BS]:
            continue
        if pending is not None and pending[0] == name:
            _, plba, pdata = pending
            k = b - plba
            if 0 <= k < len(pdata) // BS and gb == pdata[k * BS:(k + 1) * BS]:
                continue
        raise AssertionError("%s: flushed data at LBA %d lost" % (name, b))


def run_power_cut(seed, tmp_path, nth, torn, workload):
    rng = random.Random(seed * 1000 + nth)
    backing = str(tmp_path / "ns1.img")
    with strata.World(seed=seed) as w:
        assert nvme_stack(w, backing) == ["Nvme0n1"]
        w.rpc("bdev_lvol_create_lvstore", bdev_name="Nvme0n1", lvs_name="lvs0", cluster_sz=1 << 20)
        saved = w.rpc("save_config")
        total = w.rpc("bdev_lvol_get_lvstores")[0]["total_data_clusters"]
        w.rpc("sim_nvme_inject_fault", traddr=ADDR,
              rule={"name": "cut", "action": "power_cut", "opcode": 1, "nth": nth, "torn": torn})
        wl = workload(w, rng)
        cut = False
        for _ in range(40):
            try:
                wl.step()
            except (RpcError, BdevIoError, BatchedError):
                cut = True
                break
        if cut:
            wait_for(w, lambda: w.rpc("bdev_nvme_get_controllers")[0].get("state", "ready") != "resetting")

    with strata.World(seed=seed + 1, config=saved) as w2:
        uncertain = wl.uncertain()
        expected = set(wl.acked)
        must = expected - uncertain  # a failed delete may have happened
        assert wait_for(w2, lambda: len(w2.rpc("bdev_lvol_get_lvstores")) == 1), "lvstore not found"
        assert wait_for(w2, lambda: {l["name"] for l in w2.rpc("bdev_lvol_get_lvols")} >= must), \
            "acknowledged lvols missing after the restart: %s" % sorted(
                must - {l["name"] for l in w2.rpc("bdev_lvol_get_lvols")})
        lvols = {l["name"]: l for l in w2.rpc("bdev_lvol_get_lvols")}
        extra = set(lvols) - expected
        assert extra <= uncertain, \
            "lvols nobody acknowledged: %s (in flight: %s)" % (sorted(extra), sorted(uncertain))
        for name, v in wl.acked.items():
            if name not in lvols:
                continue
            d = w2.bdev("lvs0/" + name)
            info = d.info()
            if name not in uncertain:  # a resize in flight may or may not have happened
                assert info["num_blocks"] * info["block_size"] == v["size_mib"] << 20, name
            for lba, data in v["data"].items():
                check_blocks(name, d.read(lba, len(data) // BS), lba, data, wl.inflight_write)
        # No cluster leaked or lost: free + owned is what the empty store had.
        store = w2.rpc("bdev_lvol_get_lvstores")[0]
        allocated = sum(l["num_allocated_clusters"] for l in lvols.values())
        assert store["free_clusters"] + allocated == total, (store, allocated, total)
