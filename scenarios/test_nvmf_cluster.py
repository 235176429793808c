"""NVMe-oF/TCP across a simulated cluster: a target host and an initiator host over the sim
network, one seed for both (issue 14, "Python and scenarios").

Each scenario writes a seeded pattern through the initiator's bdev (Nvme0n1, the target's
Malloc0 over NVMe/TCP), injects one network or target fault, and reads everything back. They
skip, naming what is missing, in a build without the NVMe-oF target or the NVMe/TCP initiator
(strata.nvmf.missing); every failure prints its seed and replays from it.
"""

import pytest

import strata
from strata import nvmf

S = 1_000_000_000
MS = 1_000_000
BLOCKS = 8192  # 4 MiB of 512-byte blocks


@pytest.fixture
def pair(cluster):
    """(cluster, target World, initiator World, nvmf.Target) with Nvme0n1 attached."""
    target, initiator = cluster.host("target"), cluster.host("initiator")
    reasons = (nvmf.missing(target, initiator=False) +
               nvmf.missing(initiator, target=False))
    if reasons:
        pytest.skip("not in this build: " + "; ".join(reasons))
    target.rpc("bdev_malloc_create", name="Malloc0", num_blocks=BLOCKS, block_size=512)
    t = nvmf.Target(target, ["Malloc0"])
    assert nvmf.attach(initiator, t, name="Nvme0", ctrlr_loss_timeout_sec=-1,
                       reconnect_delay_sec=1) == ["Nvme0n1"]
    return cluster, target, initiator, t


def pattern(seed, lba, nblocks):
    out = bytearray()
    for b in range(nblocks):
        tag = ("%016x:%08x:" % (seed & 0xFFFFFFFFFFFFFFFF, lba + b)).encode()
        out += (tag * (512 // len(tag) + 1))[:512]
    return bytes(out)


def write_and_verify(ini, seed, extents):
    dev = ini.bdev("Nvme0n1")
    for lba, n in extents:
        dev.write(lba, pattern(seed, lba, n))
    for lba, n in extents:
        assert dev.read(lba, n) == pattern(seed, lba, n), "extent %d+%d differs" % (lba, n)


EXTENTS = [(0, 8), (100, 1), (4000, 64), (BLOCKS - 16, 16)]


def test_data_integrity_over_the_network(pair, seed):
    c, tgt, ini, t = pair
    write_and_verify(ini, seed, EXTENTS)
    # The target's bdev holds the same bytes: nothing was lost or reordered on the way.
    assert tgt.bdev("Malloc0").read(4000, 64) == pattern(seed, 4000, 64)
    assert len(t.controllers()) >= 1


@pytest.mark.parametrize("fault", ["delay", "stall", "slow_reader", "bandwidth", "partition",
                                   "reset"])
def test_data_integrity_under_each_network_fault(pair, seed, fault):
    c, tgt, ini, t = pair
    net = c.network
    write_and_verify(ini, seed, EXTENTS[:1])
    if fault == "delay":
        net.delay("target", "initiator", extra_us=5000, seconds=2)
    elif fault == "stall":
        net.stall("target", "initiator", seconds=0.5)
    elif fault == "slow_reader":
        net.slow_reader("target", 2_000_000)
    elif fault == "bandwidth":
        net.set_link("target", "initiator", latency_us=200, bandwidth=5_000_000,
                     max_segment_bytes=1000)
    elif fault == "partition":
        # Shorter than the keep-alive timeout: the connection survives, I/O waits and resumes.
        net.partition("target", "initiator")
        c.advance(500 * MS)
        net.heal("target", "initiator")
    elif fault == "reset":
        assert net.reset("target", "initiator") >= 1
        # The initiator reconnects (reconnect_delay_sec=1), I/O in flight completes once.
        c.advance(3 * S)
    write_and_verify(ini, seed + 1, EXTENTS)
    if fault == "slow_reader":
        net.slow_reader("target", 0)


def test_keep_alive_expiry_then_reconnect(pair, seed):
    c, tgt, ini, t = pair
    write_and_verify(ini, seed, EXTENTS[:2])
    assert len(t.controllers()) == 1
    # A partition longer than the keep-alive timeout: the target drops the controller.
    c.network.partition("target", "initiator")
    assert c.run_until(lambda: False, timeout_ns=30 * S) is False
    assert t.controllers() == [], "the target kept a controller past its keep-alive timeout"
    c.network.heal("target", "initiator")
    c.advance(5 * S)  # the initiator reconnects
    assert len(t.controllers()) == 1
    write_and_verify(ini, seed + 1, EXTENTS)


def test_target_restart(pair, seed):
    c, tgt, ini, t = pair
    write_and_verify(ini, seed, EXTENTS[:1])
    saved = tgt.rpc("save_config")
    tgt.close()  # its connections fail; the initiator keeps trying (ctrlr_loss_timeout_sec -1)
    c.advance(2 * S)
    tgt = c.host("target", config=saved)  # same name, same address, same config
    c.advance(5 * S)
    assert len(tgt.rpc("nvmf_subsystem_get_controllers", nqn=t.nqn)) == 1
    # Malloc data did not survive the restart; new writes go through and read back.
    write_and_verify(ini, seed + 1, EXTENTS)


def test_namespace_hot_removed_under_io(pair, seed):
    c, tgt, ini, t = pair
    write_and_verify(ini, seed, EXTENTS[:1])
    dev = ini.bdev("Nvme0n1")
    t.remove_ns(1)
    # The initiator learns it (namespace-attribute-changed AEN) and its bdev goes; I/O in the
    # meantime fails cleanly, never hangs or crashes.
    for _ in range(20):
        names = [b["name"] for b in ini.rpc("bdev_get_bdevs")]
        if "Nvme0n1" not in names:
            break
        try:
            dev.read(0, 1)
        except (RuntimeError, strata.RpcError):
            pass
        c.advance(100 * MS)
    assert "Nvme0n1" not in [b["name"] for b in ini.rpc("bdev_get_bdevs")]
    # Adding it back brings a namespace back.
    t.add_ns("Malloc0", nsid=1)
    c.advance(1 * S)
    assert "Nvme0n1" in [b["name"] for b in ini.rpc("bdev_get_bdevs")]
