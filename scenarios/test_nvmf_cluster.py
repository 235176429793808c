"""NVMe-oF/TCP across a simulated cluster: a target host and an initiator host over the sim
network, one seed for both (issue 14, "Python and scenarios").

Each scenario writes a seeded pattern through the initiator's bdev (Nvme0n1, the target's
Malloc0 over NVMe/TCP), injects one network or target fault, and reads everything back. They
skip, naming what is missing, in a build without the NVMe-oF target or the NVMe/TCP initiator
(strata.nvmf.missing); every failure prints its seed and replays from it.
"""

import struct

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
        except (strata.bdev.BdevIoError, RuntimeError, strata.RpcError):
            pass
        c.advance(100 * MS)
    assert "Nvme0n1" not in [b["name"] for b in ini.rpc("bdev_get_bdevs")]
    # Adding it back brings a namespace back.
    t.add_ns("Malloc0", nsid=1)
    c.advance(1 * S)
    assert "Nvme0n1" in [b["name"] for b in ini.rpc("bdev_get_bdevs")]


# --- the target alone, spoken to byte by byte over the sim network ----------------------------


def icreq(hpda=0, dgst=0, maxr2t=0):
    """An NVMe/TCP ICReq PDU (NVMe/TCP transport spec 3.6.2.2): 128 bytes."""
    return struct.pack("<BBBBIHBBI", 0x00, 0, 128, 0, 128, 0, hpda, dgst, maxr2t) + bytes(112)


def expect_icresp(c, conn):
    assert c.run_until(lambda: conn.info()["received"] >= 128 or conn.state != "established",
                       timeout_ns=5 * S), "no ICResp within 5 s"
    resp = conn.recv()
    assert len(resp) >= 128, "the target answered %r (%s)" % (resp[:16], conn.info())
    pdu_type, flags, hlen, pdo, plen, pfv, cpda, dgst, maxh2cdata = struct.unpack_from(
        "<BBBBIHBBI", resp)
    assert (pdu_type, hlen, plen, pfv) == (0x01, 128, 128, 0)
    assert maxh2cdata >= 4096 and maxh2cdata % 4 == 0
    return resp


def test_target_speaks_nvme_tcp_over_the_sim_network_and_survives_garbage(cluster, seed):
    target, client = cluster.host("target"), cluster.host("client")
    reasons = nvmf.missing(target, initiator=False)
    if reasons:
        pytest.skip("not in this build: " + "; ".join(reasons))
    target.rpc("bdev_malloc_create", name="Malloc0", num_blocks=BLOCKS, block_size=512)
    nvmf.Target(target, ["Malloc0"])
    c = cluster

    good = client.sock_connect("target", nvmf.DEFAULT_PORT)
    assert c.run_until(lambda: good.state != "connecting", timeout_ns=S)
    assert good.state == "established", good.info()
    good.send(icreq())
    expect_icresp(c, good)

    # A connection that sends garbage is terminated alone (C2HTermReq and/or close).
    bad = client.sock_connect("target", nvmf.DEFAULT_PORT)
    assert c.run_until(lambda: bad.state == "established", timeout_ns=S)
    bad.send(b"\xff" * 256)
    assert c.run_until(lambda: bad.state in ("eof", "error"), timeout_ns=10 * S), bad.info()
    got = bad.recv()
    if got:
        assert got[0] == 0x03, "expected a C2HTermReq, got PDU type %#x" % got[0]
    # A connection that stops mid-PDU, then vanishes with a reset.
    half = client.sock_connect("target", nvmf.DEFAULT_PORT)
    assert c.run_until(lambda: half.state == "established", timeout_ns=S)
    half.send(icreq()[:50])
    c.advance(100 * MS)
    half.abort()
    c.advance(100 * MS)

    # The target and its first connection go on; a new connection is served.
    assert good.state == "established"
    assert target.rpc("nvmf_get_subsystems")
    again = client.sock_connect("target", nvmf.DEFAULT_PORT)
    assert c.run_until(lambda: again.state == "established", timeout_ns=S)
    again.send(icreq())
    expect_icresp(c, again)

    # Across a partition a connect fails; healed, it is served again.
    c.network.partition("target", "client", mode="refuse")
    cut = client.sock_connect("target", nvmf.DEFAULT_PORT)
    assert c.run_until(lambda: cut.state == "error", timeout_ns=S)
    c.network.heal("target", "client")
    healed = client.sock_connect("target", nvmf.DEFAULT_PORT)
    assert c.run_until(lambda: healed.state == "established", timeout_ns=S)
    healed.send(icreq())
    expect_icresp(c, healed)


def test_set_options_are_the_attach_defaults(cluster, seed):
    """bdev_nvme_set_options before the attach gives the controller its reconnect limits and
    KATO (the attach names none): it rides out a target restart (the default
    ctrlr_loss_timeout_sec 0 would not), save_config writes the options first, and an
    initiator started from that config attaches with them again."""
    c = cluster
    tgt, ini = c.host("target"), c.host("initiator")
    reasons = nvmf.missing(tgt, initiator=False) + nvmf.missing(ini, target=False)
    if reasons:
        pytest.skip("not in this build: " + "; ".join(reasons))
    tgt.rpc("bdev_malloc_create", name="Malloc0", num_blocks=BLOCKS, block_size=512)
    t = nvmf.Target(tgt, ["Malloc0"])
    assert ini.rpc("bdev_nvme_set_options", ctrlr_loss_timeout_sec=-1, reconnect_delay_sec=1,
                   keep_alive_timeout_ms=5000, bdev_retry_count=5) is True
    assert nvmf.attach(ini, t, name="Nvme0") == ["Nvme0n1"]
    with pytest.raises(strata.RpcError, match="not permitted with nvme controllers already attached"):
        ini.rpc("bdev_nvme_set_options", bdev_retry_count=1)

    bdev_cfg = next(s["config"] for s in ini.rpc("save_config")["subsystems"]
                    if s["subsystem"] == "bdev")
    # SPDK's order: bdev_set_options, then the nvme module's options, then its controllers.
    assert bdev_cfg[0]["method"] == "bdev_set_options"
    assert bdev_cfg[1]["method"] == "bdev_nvme_set_options"
    assert bdev_cfg[1]["params"]["bdev_retry_count"] == 5
    attach = next(e["params"] for e in bdev_cfg if e["method"] == "bdev_nvme_attach_controller")
    # keep_alive_timeout_ms is Strata's own attach parameter: written only when it differs
    # from the module option (SPDK's decoder refuses it), which the reload sets first.
    assert "keep_alive_timeout_ms" not in attach
    assert (attach["ctrlr_loss_timeout_sec"], attach["reconnect_delay_sec"],
            bdev_cfg[1]["params"]["keep_alive_timeout_ms"]) == (-1, 1, 5000)

    write_and_verify(ini, seed, EXTENTS[:1])
    saved = tgt.rpc("save_config")
    tgt.close()
    c.advance(3 * S)  # past one attempt: only ctrlr_loss_timeout_sec -1 keeps the controller
    tgt = c.host("target", config=saved)
    c.advance(5 * S)
    write_and_verify(ini, seed + 1, EXTENTS)

    # A second initiator from the first one's bdev config: options first, then the attach.
    ini2 = c.host("initiator2", config={"subsystems": [{"subsystem": "bdev", "config": bdev_cfg}]})
    assert [b["name"] for b in ini2.rpc("bdev_get_bdevs")] == ["Nvme0n1"]
    ctrl = ini2.rpc("bdev_nvme_get_controllers")
    assert len(ctrl) == 1
    again = next(s["config"] for s in ini2.rpc("save_config")["subsystems"]
                 if s["subsystem"] == "bdev")
    assert again[0] == bdev_cfg[0]
