"""iSCSI on the simulated network (issue 15, "Scenarios in Python on the sim network").

An initiator host runs core/iscsi/testing's initiator (strata.iscsi.Initiator) against a
target host of the same seeded Cluster:

- a basic login (after a discovery session's SendTargets), write, read back, verify;
- a connection reset with writes in flight: every I/O completes exactly once; after a new
  login every acknowledged write reads back and every failed one left each block old or new;
- a partition and its healing, with the initiator's NOP keep-alive on;
- header and data digests with corrupted bytes, both ways: the connection drops and data is
  never silently wrong (a corrupted Data-Out never lands, a corrupted Data-In never reads good);
- a LUN hot-removed (its bdev deleted) under I/O: every I/O completes, nothing hangs.

The target side needs the iSCSI target (SPDK's iscsi_* RPCs and the network layer). Those
scenarios skip, with the reason, in a build that lacks either (detected at run time: the RPCs
are missing, or the portal refuses connections). The first tests run everywhere: the initiator
against a target scripted here over the sockets harness, and a login to a closed port.
"""

import random
import struct

import pytest

import strata
from strata import iscsi

S = 1_000_000_000
MS = 1_000_000
BS = 512
BLOCKS = 8192
HANG_NS = 120 * S
QD = 16


def block(seed, gen, lba):
    """The content of block `lba` written by generation `gen` (0: never written: zeros)."""
    if gen == 0:
        return bytes(BS)
    tag = b"%016x:%08x:%08x|" % (seed & (2**64 - 1), gen, lba)
    return (tag * (BS // len(tag) + 1))[:BS]


# ---- a scripted target over the sockets harness (no iSCSI target needed) ----------------------

def _pdu(opcode, flags, rest, data=b""):
    """A BHS: opcode, flags, bytes 2..3, TotalAHSLength 0, DataSegmentLength, then `rest`
    (bytes 8..47), then the data padded to 4."""
    bhs = struct.pack(">BBBBB", opcode, flags, rest[0], rest[1], 0)
    bhs += len(data).to_bytes(3, "big") + rest[2:]
    assert len(bhs) == 48
    return bhs + data + bytes((4 - len(data) % 4) % 4)


class ScriptedTarget:
    """Answers one connection from canned PDUs: login in two steps, TEST UNIT READY, READ(10)
    from a pattern, WRITE(10) with immediate data (kept in .written)."""

    def __init__(self, cluster, conn):
        self.c, self.conn = cluster, conn
        self.buf = b""
        self.stat_sn = 100
        self.written = {}
        self.pattern = bytes(range(256)) * 2

    def _send(self, b):
        self.conn.send(b)

    def _sn(self, cmd_sn, advance):
        exp = (cmd_sn + advance) & 0xFFFFFFFF
        return struct.pack(">III", self.stat_sn, exp, (exp + 15) & 0xFFFFFFFF)

    def serve(self, steps=200):
        for _ in range(steps):
            self.c.advance(100_000)
            self.buf += self.conn.recv()
            while len(self.buf) >= 48:
                dsl = int.from_bytes(self.buf[5:8], "big")
                total = 48 + dsl + (4 - dsl % 4) % 4
                if len(self.buf) < total:
                    break
                pdu, self.buf = self.buf[:total], self.buf[total:]
                self.on_pdu(pdu[:48], pdu[48:48 + dsl])

    def on_pdu(self, bhs, data):
        op = bhs[0] & 0x3F
        itt = bhs[16:20]
        cmd_sn = int.from_bytes(bhs[24:28], "big")
        if op == 0x03:  # Login Request
            csg = (bhs[1] >> 2) & 3
            isid_tsih = bhs[8:14] + struct.pack(">H", 5 if csg == 1 else 0)
            if csg == 0:
                flags, text = 0x81, b"AuthMethod=None\0"
            else:
                flags = 0x87
                text = (b"HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
                        b"ImmediateData=Yes\0InitialR2T=Yes\0FirstBurstLength=8192\0"
                        b"MaxBurstLength=65536\0")
            rest = b"\0\0" + isid_tsih + itt + bytes(4) + self._sn(cmd_sn, 0) + bytes(12)
            self._send(_pdu(0x23, flags, rest, text))
            self.stat_sn += 1
            return
        assert op == 0x01, "scripted target got opcode %#x" % op
        cdb = bhs[32:48]
        tail = bytes(4) + self._sn(cmd_sn, 1) + bytes(12)
        if cdb[0] == 0x28:  # READ(10): one Data-In with status
            n = int.from_bytes(cdb[7:9], "big") * BS
            rest = b"\0\0" + bytes(8) + itt + b"\xff\xff\xff\xff" + self._sn(cmd_sn, 1) + bytes(12)
            self._send(_pdu(0x25, 0x81, rest, self.pattern[:n]))
        else:
            if cdb[0] == 0x2A:
                self.written[int.from_bytes(cdb[2:6], "big")] = data
            rest = b"\0\0" + bytes(8) + itt + tail
            self._send(_pdu(0x21, 0x80, rest))
        self.stat_sn += 1


def test_initiator_against_a_scripted_target(seed):
    with strata.Cluster(seed=seed) as c:
        tgt, ini = c.host("target"), c.host("initiator")
        lis = tgt.sock_listen(3260)
        s = iscsi.Initiator(ini, "target", target="iqn.2016-06.io.spdk:disk1")
        assert c.run_until(lambda: False, timeout_ns=5 * MS) is False  # connect
        conns = lis.accepted()
        assert len(conns) == 1
        t = ScriptedTarget(c, conns[0])
        t.serve(steps=20)
        assert s.login_state == "ok", s.login_error
        assert s.state == "full_feature"
        assert s.info["tsih"] == 5
        assert s.info["first_burst_length"] == 8192
        tur = s.submit_test_unit_ready()
        rd = s.submit_read(0, 0, 1)
        data = block(seed, 1, 7)
        wr = s.submit_write(0, 7, data)
        t.serve(steps=20)
        assert tur.status == "good" and tur.completions == 1
        assert rd.status == "good" and rd.data == t.pattern[:BS]
        assert wr.status == "good"
        assert t.written[7] == data  # immediate data: the whole block in the command PDU
        # The target goes away mid-command: the command fails once, the initiator is failed.
        pending = s.submit_test_unit_ready()
        c.advance(MS)
        conns[0].abort()
        assert iscsi.wait(c, [pending], timeout_ns=S)
        assert pending.status == "io_error" and pending.completions == 1
        assert s.state == "failed"
        assert "reset" in s.error or "closed" in s.error, s.error


def test_login_to_a_closed_port_fails(seed):
    with strata.Cluster(seed=seed) as c:
        c.host("target")
        ini = c.host("initiator")
        s = iscsi.Initiator(ini, "target", target="iqn.2016-06.io.spdk:disk1")
        assert not s.wait_login(c, timeout_ns=5 * S)
        assert s.login_state == "failed"
        assert "refused" in s.login_error or "timed out" in s.login_error, s.login_error
        io = s.submit_test_unit_ready()
        assert iscsi.wait(c, [io], timeout_ns=S)
        assert io.status == "refused"


# ---- against the iSCSI target ------------------------------------------------------------------

class Scenario:
    """One seeded run: a target host with a malloc LUN behind an iSCSI target node, an
    initiator host logged in, a model of what each block may hold."""

    def __init__(self, seed, bdev_blocks=BLOCKS, **login):
        self.seed = seed
        self.rng = random.Random(seed)
        self.c = strata.Cluster(seed=seed, reactors=2)
        self.tgt = self.c.host("target")
        self.ini = self.c.host("initiator")
        reasons = iscsi.missing(self.tgt)
        if reasons:
            self.c.close()
            pytest.skip("not in this build: " + "; ".join(reasons))
        self.tgt.rpc("bdev_malloc_create", name="Malloc0", num_blocks=bdev_blocks, block_size=BS)
        self.target = iscsi.Target(self.tgt, ["Malloc0"])
        self.login_opts = dict(login)
        self.isid = 0x800000000000 | (seed & 0xFFFFFFFF)
        self.s = self.login()
        self.gen = 0
        self.may = {}
        self.ios = []

    def login(self, **extra):
        opts = dict(self.login_opts)
        opts.update(extra)
        s = iscsi.Initiator(self.ini, self.target.address, target=self.target.name,
                            isid=self.isid, **opts)
        if not s.wait_login(self.c):
            if "refused" in s.login_error:
                self.c.close()
                pytest.skip("the iSCSI target's network layer is not in this build (%s)"
                            % s.login_error)
            self.fail("login failed: %s (status %s/%s)" % (
                s.login_error, s.info.get("status_class"), s.info.get("status_detail")))
        # A new I_T nexus may see a unit attention (power on, reset: sense key 6) on its first
        # command; TEST UNIT READY consumes it, as an OS initiator's scan does.
        for _ in range(3):
            tur = s.submit_test_unit_ready()
            if not iscsi.wait(self.c, [tur], timeout_ns=10 * S):
                self.fail("TEST UNIT READY never completed")
            if tur.status == "good":
                break
            assert tur.status == "check_condition" and tur.sense_key == 6, tur
        return s

    def fail(self, msg):
        pytest.fail("seed %d: %s" % (self.seed, msg))

    def burst(self, qd=QD, blocks=(1, 8, 64), slots=64, slot_blocks=64):
        out = []
        for slot in self.rng.sample(range(slots), qd):
            lba = slot * slot_blocks
            n = self.rng.choice(blocks)
            if self.rng.random() < 0.5:
                self.gen += 1
                data = b"".join(block(self.seed, self.gen, lba + i) for i in range(n))
                out.append((self.s.submit_write(0, lba, data), self.gen))
            else:
                out.append((self.s.submit_read(0, lba, n), None))
        self.ios += [io for io, _ in out]
        return out

    def settle(self, burst, allow_errors=False, timeout_ns=HANG_NS):
        if not iscsi.wait(self.c, [io for io, _ in burst], timeout_ns=timeout_ns):
            self.fail("I/O never completed: %s" % [io for io, _ in burst if not io.done][:4])
        errors = []
        for io, gen in burst:
            if io.completions != 1 and io.status != "refused":
                self.fail("%r completed %d times" % (io, io.completions))
            if io.status == "good":
                if gen is not None:
                    for i in range(io.blocks):
                        self.may[io.lba + i] = {gen}
                else:
                    self.check(io.lba, io.data)
                continue
            errors.append(io.status)
            if not allow_errors:
                self.fail("%r failed: %s (%s)" % (io, io.status, io.error or io.refusal))
            if gen is not None:
                for i in range(io.blocks):
                    self.may.setdefault(io.lba + i, {0}).add(gen)
        return errors

    def check(self, lba, data):
        for i in range(len(data) // BS):
            got = data[i * BS:(i + 1) * BS]
            gens = self.may.get(lba + i, {0})
            found = [g for g in gens if got == block(self.seed, g, lba + i)]
            if not found:
                self.fail("block %d holds %r..., expected generation %s" % (
                    lba + i, got[:40], sorted(gens)))
            self.may[lba + i] = {found[0]}

    def verify_all(self, slots=64, slot_blocks=64):
        for k in range(0, slots, QD):
            burst = [(self.s.submit_read(0, i * slot_blocks, slot_blocks), None)
                     for i in range(k, min(k + QD, slots))]
            self.ios += [io for io, _ in burst]
            self.settle(burst)

    def close(self):
        self.c.close()


@pytest.fixture
def scenario():
    made = []

    def make(seed, **kw):
        sc = Scenario(seed, **kw)
        made.append(sc)
        return sc

    yield make
    for sc in made:
        try:
            sc.c.close()
        except Exception:  # noqa: BLE001
            pass


def test_basic_login_write_read_verify(scenario, seed):
    sc = scenario(seed)
    # Discovery first: SendTargets lists the node at the portal.
    d = iscsi.Initiator(sc.ini, sc.target.address)
    assert d.wait_login(sc.c), d.login_error
    targets = d.send_targets(sc.c)
    assert [t["name"] for t in targets] == [sc.target.name]
    assert any(a.startswith(sc.target.address + ":3260") for a in targets[0]["addresses"])
    d.logout(sc.c)
    # The normal session: capacity, a few bursts, everything read back.
    assert sc.s.read_capacity(sc.c) == (BLOCKS, BS)
    for _ in range(3):
        sc.settle(sc.burst())
    sc.verify_all()
    sc.s.logout(sc.c)
    assert sc.s.state == "closed"
    sc.close()


@pytest.mark.parametrize("k", range(2))
def test_connection_reset_mid_write(scenario, seed, k):
    sc = scenario(seed + k, immediate_data=False)  # writes wait on R2Ts: in flight longer
    sc.settle(sc.burst())
    burst = sc.burst()
    sc.c.advance(30_000)
    sc.c.network.reset("target", "initiator")
    errors = sc.settle(burst, allow_errors=True)
    assert set(errors) <= {"io_error"}, errors
    # A new connection reinstates the session (same ISID) and sees a consistent disk.
    sc.s = sc.login(immediate_data=False)
    sc.verify_all()
    sc.settle(sc.burst())
    sc.close()


def test_partition_and_heal(scenario, seed):
    sc = scenario(seed, nop_interval_ms=1000, nop_timeout_ms=5000)
    sc.settle(sc.burst())
    burst = sc.burst()
    sc.c.advance(30_000)
    sc.c.network.partition("target", "initiator")
    sc.c.advance(2 * S)
    sc.c.network.heal("target", "initiator")
    errors = sc.settle(burst, allow_errors=True)
    assert set(errors) <= {"io_error"}, errors
    if sc.s.state != "full_feature":
        sc.s = sc.login()
    # A partition longer than the NOP timeout: the connection is declared lost, nothing hangs.
    burst = sc.burst()
    sc.c.advance(30_000)
    sc.c.network.partition("target", "initiator")
    errors = sc.settle(burst, allow_errors=True, timeout_ns=30 * S)
    sc.c.network.heal("target", "initiator")
    assert sc.s.state == "failed" and "NOP" in sc.s.error, sc.s.error
    sc.s = sc.login()
    sc.verify_all()
    sc.close()


def test_corrupted_bytes_with_digests(scenario, seed):
    sc = scenario(seed, header_digest=True, data_digest=True, immediate_data=False)
    assert sc.s.info["header_digest"] and sc.s.info["data_digest"]
    data0 = b"".join(block(seed, 1, i) for i in range(8))
    sc.s.write(sc.c, 0, 0, data0)
    sc.may.update({i: {1} for i in range(8)})
    sc.gen = 1
    # A Data-Out payload byte flipped after its digest was computed: the target sees a data
    # digest error; the write never completes good and the disk never holds the flipped byte.
    sc.s.corrupt_tx(offset=48 + 4 + 100, opcode=0x05)
    sc.gen += 1
    bad = b"".join(block(seed, sc.gen, i) for i in range(8))
    io = sc.s.submit_write(0, 0, bad)
    assert iscsi.wait(sc.c, [io], timeout_ns=HANG_NS)
    assert sc.s.corrupted_tx == 1
    assert io.status != "good", "a write with a corrupted Data-Out completed good"
    for i in range(8):
        sc.may.setdefault(i, {0}).add(sc.gen)
    if sc.s.state != "full_feature":
        sc.s = sc.login(header_digest=True, data_digest=True, immediate_data=False)
    sc.check(0, sc.s.read(sc.c, 0, 0, 8))
    # A header byte flipped: the header digest fails, the target drops the connection.
    sc.s.corrupt_tx(offset=20, opcode=0x01)
    io = sc.s.submit_read(0, 0, 8)
    assert iscsi.wait(sc.c, [io], timeout_ns=HANG_NS)
    assert io.status != "good"
    sc.s = sc.login(header_digest=True, data_digest=True, immediate_data=False)
    # A Data-In byte flipped on the way in: the read fails, the connection drops.
    sc.s.corrupt_rx(after=48 + 4 + 200)
    io = sc.s.submit_read(0, 0, 8)
    assert iscsi.wait(sc.c, [io], timeout_ns=HANG_NS)
    assert sc.s.corrupted_rx == 1
    assert io.status == "io_error" and "digest" in io.error, (io.status, io.error)
    sc.s = sc.login(header_digest=True, data_digest=True)
    sc.check(0, sc.s.read(sc.c, 0, 0, 8))
    sc.close()


def test_lun_hot_removal_under_io(scenario, seed):
    sc = scenario(seed)
    sc.settle(sc.burst())
    burst = sc.burst(qd=QD)
    sc.c.advance(20_000)
    sc.tgt.rpc("bdev_malloc_delete", name="Malloc0")
    if not iscsi.wait(sc.c, [io for io, _ in burst], timeout_ns=HANG_NS):
        sc.fail("I/O hung after the LUN was removed")
    for io, _ in burst:
        assert io.completions == 1 or io.status == "refused", io
        assert io.status in ("good", "check_condition", "io_error", "aborted", "refused"), io
    # The LUN is gone: a new command gets a clear error, never a hang or good data.
    if sc.s.state == "full_feature":
        io = sc.s.submit_read(0, 0, 1)
        assert iscsi.wait(sc.c, [io], timeout_ns=HANG_NS)
        assert io.status != "good", io
    sc.close()


def test_same_seed_same_trace(seed):
    """A run with outstanding I/O and a reset replays step for step from its seed."""
    def run():
        sc = Scenario(seed, immediate_data=False)
        sc.settle(sc.burst())
        burst = sc.burst()
        sc.c.advance(30_000)
        sc.c.network.reset("target", "initiator")
        statuses = [io.status for io, _ in burst] if sc.settle(burst, allow_errors=True) is not None else []
        h = sc.c.trace_hash()
        sc.close()
        return h, statuses

    assert run() == run()
