#!/usr/bin/python3
"""Strata's main job in one page: a whole stack on emulated hardware under the seeded simulator.

An emulated NVMe SSD (with a volatile write cache and a latency model) carries bdev_nvme; we write
through the bdev layer, inject a media error, cut the power in the middle of unflushed writes
(torn at sector granularity), let the driver recover the controller, and check what survived.
Everything runs in virtual time and replays exactly from the seed:

    /usr/bin/python3 bindings/python/examples/crash_demo.py --seed 1234
"""

import argparse
import random
import sys

import strata
from strata.bdev import BdevIoError

ADDR = "0000:01:00.0"
BLOCK = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=None)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # interleave with the C++ log lines on stderr
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**32)
    print("seed %d  (replay: %s --seed %d)" % (seed, sys.argv[0], seed))
    rng = random.Random(seed)

    with strata.World(seed=seed) as w:
        w.rpc("sim_nvme_create", traddr=ADDR, serial="DEMO-0001",
              namespaces=[{"nsid": 1, "num_blocks": 65536, "block_size": BLOCK}],
              read_latency_us=80, write_latency_us=20, volatile_write_cache=True)
        bdevs = w.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR)
        d = w.bdev(bdevs[0])
        info = d.info()
        print("emulated NVMe %s -> bdev %s: %d x %d B" % (ADDR, info["name"], info["num_blocks"],
                                                          info["block_size"]))

        # 1. Durable data: written, then flushed.
        durable = {}
        for i in range(16):
            lba = i * 64
            durable[lba] = bytes([rng.randrange(256)]) * (8 * BLOCK)
            d.write(lba, durable[lba])
        d.flush()
        print("wrote 16 x 4 KiB and flushed (virtual time %.3f ms)" % (w.now() / 1e6))

        # 2. A media error on one LBA range, from the fault plan.
        rule = {"action": "error_status", "opcode": 2, "lba_first": 128, "lba_last": 135,
                "sct": 2, "sc": 0x81}
        w.rpc("sim_nvme_inject_fault", traddr=ADDR, rule=rule)
        try:
            d.read(128, 8)
            print("BUG: the injected media error did not surface")
            return 1
        except BdevIoError as e:
            print("read of LBA 128: %s" % e)
        w.rpc("sim_nvme_clear_faults", traddr=ADDR)

        # 3. Unflushed writes, then a power cut that tears them at sector granularity.
        volatile = {}
        for i in range(16):
            lba = 2048 + i * 64
            volatile[lba] = bytes([0xA0 + i]) * (8 * BLOCK)
            d.write(lba, volatile[lba])
        w.rpc("sim_nvme_power_cut", traddr=ADDR, torn=True)
        print("power cut with 16 x 4 KiB unflushed in the write cache (torn)")
        w.advance(50_000_000)  # the driver sees CSTS.RDY drop and resets the controller

        lost = 0
        for lba, data in durable.items():
            if d.read(lba, 8) != data:
                print("BUG: flushed data at LBA %d was lost" % lba)
                return 1
        for lba, data in volatile.items():
            got = d.read(lba, 8)
            kept = sum(1 for s in range(8) if got[s * BLOCK:(s + 1) * BLOCK] == data[s * BLOCK:(s + 1) * BLOCK])
            if kept < 8:
                lost += 1
        print("after the reset: all 16 flushed writes intact; %d of 16 unflushed writes lost or torn"
              % lost)
        ctrl = w.rpc("bdev_nvme_get_controllers")[0]
        print("controller %s state: %s" % (ctrl["name"], ctrl.get("state", "?")))
        print("virtual time %.3f ms, %d simulation steps, trace hash %016x"
              % (w.now() / 1e6, w.steps, w.trace_hash()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
