"""CANARY: a planted bug that only some seeds hit, so the seed swarm can prove it finds bugs.

Excluded from normal runs (marker `canary`, runs only with --canary). CI's swarm stage runs it
for a short while and fails if no seed of the swarm finds it (ci/test, swarm stage).

The planted bug is in this test's model, not in Strata: it claims that a write which failed
with a media error always succeeds when retried once. That is wrong whenever the fault plan
turns media errors on at a high rate and the simulator's seeded draw fails both tries, a rare
combination (a few seeds in a hundred). Nothing else here is wrong on purpose.
"""

import random

import pytest

from strata.bdev import BdevIoError

ADDR = "0000:0a:00.0"


@pytest.mark.canary
def test_canary_retry_always_succeeds(world, seed, fault_plan):
    rng = random.Random(seed)
    world.rpc("bdev_nvme_set_options", bdev_retry_count=0)  # errors reach the test
    world.rpc("sim_nvme_create", traddr=ADDR, seed=seed,
              namespaces=[{"nsid": 1, "num_blocks": 1024, "block_size": 512}])
    world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="PCIe", traddr=ADDR)
    d = world.bdev("Nvme0n1")
    if fault_plan.on("media_error"):
        world.rpc("sim_nvme_inject_fault", traddr=ADDR, rule={
            "action": "error_status", "opcode": 1, "sct": 2, "sc": 0x80,
            "probability": fault_plan.rate("media_error")})
    for _ in range(16):
        lba, data = rng.randrange(1024), bytes([rng.randrange(256)]) * 512
        try:
            d.write(lba, data)
        except BdevIoError:
            # PLANTED BUG (the canary): a retried write may fail again.
            try:
                d.write(lba, data)
            except BdevIoError:
                raise AssertionError("CANARY: retried write failed again (planted bug found; "
                                     "plan %r)" % (fault_plan,))
