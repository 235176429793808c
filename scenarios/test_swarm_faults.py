"""NVMe fault swarm: each seed draws a fault plan (strata.swarm.FaultPlan: which of media errors,
delays, controller resets and a power cut are on, and at what rates) and runs a seeded write /
flush / read workload through bdev_nvme on an emulated SSD against a model of what was
acknowledged. Invariants: a flushed, acknowledged block reads back exactly (after any reset or
power cut); a block whose write failed or was not flushed before a cut reads as one of the
values it may hold; every read succeeds once the faults are cleared. Run it as a swarm:

    /usr/bin/python3 -m pytest scenarios/test_swarm_faults.py -n auto --swarm-minutes 5
"""

import random

import pytest

from strata.bdev import BdevIoError

ADDR = "0000:06:00.0"
BLOCKS = 4096
BS = 512
REGION = 64  # LBAs the workload touches (small: overwrites and reads of the same blocks)


def block(tag):
    return bytes([tag & 0xFF]) * BS


def run_fault_workload(world, seed, plan, ops=60):
    rng = random.Random(seed)
    # Retries in bdev_nvme hide most media errors; the plan also runs without them.
    world.rpc("bdev_nvme_set_options", bdev_retry_count=plan.choice("bdev_retry_count", [0, 3]))
    world.rpc("sim_nvme_create", traddr=ADDR, seed=seed,
              namespaces=[{"nsid": 1, "num_blocks": BLOCKS, "block_size": BS}])
    assert world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe",
                     traddr=ADDR) == ["Nvme0n1"]
    d = world.bdev("Nvme0n1")
    if plan.on("media_error"):
        for opcode in (1, 2):  # write, read
            world.rpc("sim_nvme_inject_fault", traddr=ADDR, rule={
                "action": "error_status", "opcode": opcode, "sct": 2,
                "sc": 0x81 if opcode == 2 else 0x80, "probability": plan.rate("media_error")})
    if plan.on("delay"):
        world.rpc("sim_nvme_inject_fault", traddr=ADDR, rule={
            "action": "delay", "delay_us": 200, "probability": plan.rate("delay")})
    cut_at = plan.choice("cut_at", range(ops)) if plan.on("power_cut") else None

    durable = {}   # lba -> the one value a read must return
    possible = {}  # lba -> set of values a read may return (write failed, or not yet flushed)

    def may_be(lba):
        return possible.get(lba, {durable.get(lba, bytes(BS))})

    for i in range(ops):
        if i == cut_at:
            world.rpc("sim_nvme_power_cut", traddr=ADDR, torn=plan.choice("torn", [False, True]))
            world.advance(50_000_000)  # the driver sees CSTS.RDY 0 and resets the controller
            # Unflushed writes may or may not have survived: widen them to old-or-new.
            for l, vals in list(possible.items()):
                possible[l] = vals | {durable.get(l, bytes(BS))}
        if plan.on("reset") and rng.random() < plan.rate("reset") * 10:
            world.rpc("bdev_nvme_reset_controller", name="Nvme0")
            world.advance(10_000_000)
        lba = rng.randrange(REGION)
        op = rng.choice(["write", "write", "read", "flush"])
        if op == "write":
            tag = rng.randrange(1, 256)
            before = may_be(lba)
            try:
                d.write(lba, block(tag))
                possible[lba] = {block(tag)}  # acknowledged, not yet durable
            except BdevIoError:
                possible[lba] = before | {block(tag)}
        elif op == "flush":
            try:
                d.flush()
            except BdevIoError:
                continue
            for l, vals in list(possible.items()):
                if len(vals) == 1:  # acknowledged writes are durable after a flush
                    durable[l] = next(iter(vals))
                    del possible[l]
        else:
            try:
                got = d.read(lba, 1)
            except BdevIoError:
                continue  # an injected media error; checked again below with faults off
            assert got in may_be(lba), "LBA %d read a value nobody wrote (plan %r)" % (lba, plan)
    world.rpc("sim_nvme_clear_faults", traddr=ADDR)
    for lba in range(REGION):
        got = d.read(lba, 1)
        assert got in may_be(lba), "LBA %d lost an acknowledged write (plan %r)" % (lba, plan)
    return durable, possible


def test_nvme_fault_plan(world, seed, fault_plan):
    run_fault_workload(world, seed, fault_plan)
