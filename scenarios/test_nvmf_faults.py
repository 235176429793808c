"""NVMe-oF/TCP under faults WITH I/O OUTSTANDING (issue 14, "Python and scenarios").

A Strata target host and a Strata initiator host share one seeded Cluster. The initiator keeps
QD I/Os (writes and reads on disjoint extents) in flight through one strata.bdev.Queue (one
channel: one I/O qpair, one connection, as an application's) while a fault hits: a delay, a
stall, a connection reset, a partition and its healing, a slow reader, a partition longer than
the keep-alive timeout, a target restart, a namespace hot-removed, a path lost for good past
ctrlr_loss_timeout_sec. After each:

- every I/O completed exactly once (Io.completions == 1), within a virtual-time bound: nothing
  hangs;
- each completed with success, or (where the fault allows it) with a clear error status;
- every acknowledged write reads back intact; a write that failed left each of its blocks
  either as it was or as written (the model keeps both until a later write settles them);
- the cluster closes (no descriptor or controller left behind).

Each test runs under a few seeds derived from the `seed` fixture (seed, seed+1, ...): a failure
names the cluster's seed, and `--seed S` with the same test id replays it step for step
(test_same_seed_same_trace checks one scenario's trace hash).

Bugs these scenarios found have regression tests at the end of the file (both fixed on main).
"""

import contextlib
import random

import pytest

import strata
import strata.bdev as sbdev
from strata import nvmf

S = 1_000_000_000
MS = 1_000_000
BS = 512
BLOCKS = 8192      # the target's namespace: 4 MiB
IO_BLOCKS = 64     # a slot: I/O i covers the first SIZES[k] blocks of slot i
SIZES = (1, 8, 8, 64)  # 512 B and 4 KiB (in capsule), 32 KiB (R2T + H2CData; C2HData reads)
SLOTS = 64         # extents the workload uses: slot i is blocks [i*IO_BLOCKS, (i+1)*IO_BLOCKS)
QD = 32            # I/Os outstanding in a burst
HANG_NS = 120 * S  # virtual time within which every I/O must complete
SEEDS = 3          # seeds per scenario (seed, seed+1, seed+2)


def block(seed, gen, lba):
    """The content of block `lba` written by generation `gen` (0: never written: zeros)."""
    if gen == 0:
        return bytes(BS)
    tag = b"%016x:%08x:%08x|" % (seed & (2**64 - 1), gen, lba)
    return (tag * (BS // len(tag) + 1))[:BS]


class Scenario:
    """One seeded run: target + initiator, a queue on Nvme0n1, a model of what each block may
    hold. attach: bdev_nvme_attach_controller options; persistent: the target's namespace on
    an emulated NVMe SSD with a backing file (survives a target restart) instead of malloc;
    transport: extra nvmf_create_transport parameters."""

    def __init__(self, seed, tmp_path=None, persistent=False, transport=None, **attach):
        self.seed = seed
        self.rng = random.Random(seed)
        self.c = strata.Cluster(seed=seed, reactors=2)
        self.tgt = self.c.host("target")
        self.ini = self.c.host("initiator")
        reasons = (nvmf.missing(self.tgt, initiator=False) +
                   nvmf.missing(self.ini, target=False))
        if reasons:
            self.c.close()
            pytest.skip("not in this build: " + "; ".join(reasons))
        if persistent:
            ns = {"nsid": 1, "num_blocks": BLOCKS, "block_size": BS,
                  "backing_file": str(tmp_path / ("ns-%d.img" % seed))}
            self.tgt.rpc("sim_nvme_create", traddr="0000:01:00.0", namespaces=[ns],
                         volatile_write_cache=False)
            assert self.tgt.rpc("bdev_nvme_attach_controller", name="Local0", trtype="PCIe",
                                traddr="0000:01:00.0") == ["Local0n1"]
            backing = "Local0n1"
        else:
            self.tgt.rpc("bdev_malloc_create", name="Malloc0", num_blocks=BLOCKS, block_size=BS)
            backing = "Malloc0"
        self.target = nvmf.Target(self.tgt, [backing], transport=transport)
        opts = dict(ctrlr_loss_timeout_sec=-1, reconnect_delay_sec=1)
        opts.update(attach)
        assert nvmf.attach(self.ini, self.target, name="Nvme0", **opts) == ["Nvme0n1"]
        self.dev = self.ini.bdev("Nvme0n1")
        self.q = self.dev.queue()
        self.gen = 0
        self.may = {}  # lba -> set of generations the block may hold (absent: {0})
        self.ios = []  # every Io submitted, for the exactly-once check

    def fail(self, msg):
        pytest.fail("seed %d: %s" % (self.seed, msg))

    # ---- workload ----------------------------------------------------------------------------

    def submit_burst(self, qd=QD, slots=None):
        """QD I/Os on distinct slots: about half writes of a new generation, half reads."""
        picked = self.rng.sample(range(SLOTS) if slots is None else slots, qd)
        burst = []
        for slot in picked:
            lba = slot * IO_BLOCKS
            n = self.rng.choice(SIZES)
            if self.rng.random() < 0.5:
                self.gen += 1
                data = b"".join(block(self.seed, self.gen, lba + i) for i in range(n))
                io = self.q.submit_write(lba, data)
                burst.append((io, self.gen))
            else:
                burst.append((self.q.submit_read(lba, n), None))
        self.ios += [io for io, _ in burst]
        return burst

    def in_flight(self, burst, extra_ns=30_000):
        """Runs until every I/O of the burst was submitted, then extra_ns more (on the wire)."""
        ok = self.c.run_until(lambda: all(io.started for io, _ in burst), timeout_ns=S)
        if not ok:
            self.fail("the burst was not submitted within 1 s")
        if extra_ns:
            self.c.advance(extra_ns)
        return sum(not io.done for io, _ in burst)

    def settle(self, burst, allow_errors=False, timeout_ns=HANG_NS):
        """Waits for every I/O of the burst and folds the outcome into the model. Returns the
        statuses that were not "success"."""
        if not sbdev.wait(self.c, [io for io, _ in burst], timeout_ns=timeout_ns):
            stuck = [io for io, _ in burst if not io.done]
            self.fail("%d I/O(s) never completed within %d s of virtual time: %s" % (
                len(stuck), timeout_ns // S, stuck[:4]))
        errors = []
        for io, gen in burst:
            if io.completions != 1 and io.status != "refused":
                self.fail("%r completed %d times" % (io, io.completions))
            lba = io.offset_blocks
            n = io.num_blocks
            if io.status == "success":
                if gen is not None:
                    for i in range(n):
                        self.may[lba + i] = {gen}
                else:
                    self.check_read(lba, io.data)
                continue
            errors.append(io.status)
            if not allow_errors:
                self.fail("%r failed: %s (nvme status 0x%x, refusal %s)" % (
                    io, io.status, io.nvme_status, io.refusal))
            if gen is not None:  # not acknowledged: each block is the old or the new content
                for i in range(n):
                    self.may.setdefault(lba + i, {0}).add(gen)
        return errors

    def check_read(self, lba, data):
        """Checks a successful read against the model and settles each block it read to the
        generation found (a failed write's blocks may hold either: now it is known which)."""
        assert len(data) % BS == 0
        for i in range(len(data) // BS):
            got = data[i * BS:(i + 1) * BS]
            gens = self.may.get(lba + i, {0})
            found = [g for g in gens if got == block(self.seed, g, lba + i)]
            if not found:
                self.fail("block %d holds %r..., expected generation %s" % (
                    lba + i, got[:40], sorted(gens)))
            self.may[lba + i] = {found[0]}

    def verify_all(self):
        """Reads every slot back (QD at a time) and checks it against the model."""
        for first in range(0, SLOTS, QD):
            burst = [(self.q.submit_read(s * IO_BLOCKS, IO_BLOCKS), None)
                     for s in range(first, min(first + QD, SLOTS))]
            self.ios += [io for io, _ in burst]
            self.settle(burst)

    def round(self, allow_errors=False):
        """One burst with no fault: every I/O succeeds."""
        return self.settle(self.submit_burst(), allow_errors=allow_errors)

    def finish(self):
        """Exactly once over the whole run, then a clean close."""
        for io in self.ios:
            if io.completions > 1:
                self.fail("%r completed %d times" % (io, io.completions))
        self.c.close()


@pytest.fixture
def scenario(tmp_path):
    """Factory: scenario(seed, **options) -> Scenario; whatever a failing test left open is
    closed at teardown."""
    made = []

    def make(s, **kw):
        sc = Scenario(s, tmp_path=tmp_path, **kw)
        made.append(sc)
        return sc

    yield make
    for sc in made:
        try:
            sc.c.close()  # idempotent after finish()
        except Exception:  # noqa: BLE001 - the test's own failure is the one to report
            pass


def seeds(seed):
    """The cluster seeds a test runs: seed, seed+1, ... Any failure inside one names it."""
    for s in [seed + k for k in range(SEEDS)]:
        yield s


@contextlib.contextmanager
def replaying(s, base):
    """Puts the cluster's seed into any failure raised inside (pytest.fail messages of a
    Scenario already carry it)."""
    try:
        yield
    except Exception as e:  # AssertionError, RuntimeError from a World, ...
        raise AssertionError("seed %d (this test with --seed %d replays it): %s: %s" % (
            s, base, type(e).__name__, e)) from e


# ---- network faults with I/O outstanding -----------------------------------------------------


@pytest.mark.parametrize("fault", ["delay", "stall", "slow_reader", "partition"])
def test_io_outstanding_through_a_transient_network_fault(scenario, seed, fault):
    """Faults the connection survives: every outstanding I/O completes with success."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s)
            net = sc.c.network
            sc.round()
            burst = sc.submit_burst()
            assert sc.in_flight(burst) > 0, "nothing was in flight when the fault hit"
            if fault == "delay":
                net.delay("target", "initiator", extra_us=5000, seconds=2)
            elif fault == "stall":
                net.stall("target", "initiator", seconds=0.5)
            elif fault == "slow_reader":
                net.slow_reader("initiator", 200_000)
                net.slow_reader("target", 200_000)
            elif fault == "partition":
                # Shorter than the keep-alive timeout (10 s): the connection survives.
                net.partition("target", "initiator")
                sc.c.advance(2 * S)
                if any(io.done for io, _ in burst):
                    sc.fail("an I/O completed across a partition")
                net.heal("target", "initiator")
            sc.settle(burst)
            if fault == "slow_reader":
                net.slow_reader("initiator", 0)
                net.slow_reader("target", 0)
            sc.round()
            sc.verify_all()
            sc.finish()


@pytest.mark.parametrize("fault", ["slow_reader", "reset"])
def test_digests_through_accel_with_io_outstanding(scenario, seed, fault):
    """Header and data digests on, every data digest the target handles through the accel
    framework (ddgst_accel_threshold 1): a slow reader, or a connection reset, with QD I/O
    outstanding; every I/O completes once and every block holds what the model allows."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s, transport={"ddgst_accel_threshold": 1}, hdgst=True, ddgst=True)
            net = sc.c.network
            sc.round()
            burst = sc.submit_burst()
            assert sc.in_flight(burst) > 0
            if fault == "slow_reader":
                net.slow_reader("target", 200_000)
                errors = sc.settle(burst)
                net.slow_reader("target", 0)
            else:
                assert net.reset("target", "initiator") >= 1
                errors = sc.settle(burst, allow_errors=True)
                assert set(errors) <= {"aborted", "io_error"}, errors
            sc.round()
            sc.verify_all()
            ops = sc.tgt.rpc("accel_get_stats")["operations"]
            crc = sum(o["executed"] for o in ops if o["opcode"] == "crc32c")
            assert crc > 0, "no data digest went through accel: %r" % ops
            sc.finish()


def test_io_outstanding_through_a_connection_reset(scenario, seed):
    """Both connections reset under QD I/O: the initiator reconnects (ctrlr_loss_timeout_sec
    -1); each outstanding I/O completes once (bdev_nvme retries what the reset aborted: see
    test_io_aborted_by_a_connection_reset_is_retried) and the data is consistent."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s)
            sc.round()
            burst = sc.submit_burst()
            assert sc.in_flight(burst) > 0
            assert sc.c.network.reset("target", "initiator") >= 1
            errors = sc.settle(burst, allow_errors=True)
            assert set(errors) <= {"aborted", "io_error"}, errors
            sc.round()  # reconnected: new I/O succeeds
            sc.verify_all()
            sc.finish()


def test_keep_alive_expiry_with_io_outstanding(scenario, seed):
    """A partition longer than the keep-alive timeout: the target drops the controller, the
    initiator's keep-alive times out and it reconnects after the heal; outstanding I/O completes
    once and nothing hangs."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s, keep_alive_timeout_ms=2000)
            sc.round()
            assert len(sc.target.controllers()) == 1
            burst = sc.submit_burst()
            assert sc.in_flight(burst) > 0
            sc.c.network.partition("target", "initiator")
            sc.c.advance(8 * S)  # 4 x KATO
            assert sc.target.controllers() == [], "the target kept a controller past its KATO"
            sc.c.network.heal("target", "initiator")
            errors = sc.settle(burst, allow_errors=True)
            assert set(errors) <= {"aborted", "io_error"}, errors
            assert sc.c.run_until(lambda: False, timeout_ns=3 * S) is False  # reconnect
            assert len(sc.target.controllers()) == 1
            sc.round()
            sc.verify_all()
            sc.finish()


def test_target_restart_with_io_outstanding(scenario, seed):
    """The target host closes with QD I/O outstanding and comes back (same name, address and
    config; its namespace on a file-backed emulated SSD): the initiator reconnects, every I/O
    completed once, acknowledged writes survived the restart."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s, persistent=True)
            sc.round()
            saved = sc.tgt.rpc("save_config")
            burst = sc.submit_burst()
            assert sc.in_flight(burst) > 0
            sc.tgt.close()
            sc.c.advance(2 * S)
            sc.tgt = sc.c.host("target", config=saved)
            errors = sc.settle(burst, allow_errors=True)
            assert set(errors) <= {"aborted", "io_error"}, errors
            sc.c.advance(3 * S)  # reconnect
            assert len(sc.tgt.rpc("nvmf_subsystem_get_controllers", nqn=sc.target.nqn)) == 1
            sc.round()
            sc.verify_all()
            sc.finish()


def test_namespace_hot_removed_under_io(scenario, seed):
    """The namespace goes from the subsystem with QD I/O outstanding: each I/O completes once
    (success, or a clear error), the initiator's bdev goes, its queue closes, later I/O is
    refused; the namespace added back comes back with the data that was acknowledged."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s)
            sc.round()
            burst = sc.submit_burst()
            assert sc.in_flight(burst, extra_ns=10_000) > 0
            sc.target.remove_ns(1)
            errors = sc.settle(burst, allow_errors=True)
            assert set(errors) <= {"aborted", "io_error", "device_removed", "invalid_argument"}, errors
            if not sc.c.run_until(lambda: sc.q.closed, timeout_ns=10 * S):
                sc.fail("the queue did not close after its bdev was hot-removed: %r" % sc.q)
            assert sc.q.removed
            assert "Nvme0n1" not in [b["name"] for b in sc.ini.rpc("bdev_get_bdevs")]
            late = sc.q.submit_read(0, 1)
            assert sbdev.wait(sc.c, [late], timeout_ns=S) and late.status == "refused"
            sc.target.add_ns("Malloc0", nsid=1)
            assert sc.c.run_until(lambda: False, timeout_ns=2 * S) is False
            assert "Nvme0n1" in [b["name"] for b in sc.ini.rpc("bdev_get_bdevs")]
            sc.q = sc.dev.queue()
            sc.verify_all()
            sc.round()
            sc.finish()


def test_path_lost_past_ctrlr_loss_timeout(scenario, seed):
    """The target vanishes for good under QD I/O with ctrlr_loss_timeout_sec 3: the outstanding
    I/O fails with a clear error status once the limit passes (never hangs), the controller is
    given up, and I/O after that is failed or refused at once."""
    for s in seeds(seed):
        with replaying(s, seed):
            sc = scenario(s, ctrlr_loss_timeout_sec=3, reconnect_delay_sec=1)
            sc.round()
            burst = sc.submit_burst()
            assert sc.in_flight(burst) > 0
            sc.c.network.partition("target", "initiator", mode="refuse")
            sc.c.network.reset("target", "initiator")
            errors = sc.settle(burst, allow_errors=True, timeout_ns=30 * S)
            assert errors, "no I/O failed although the path is gone"
            assert set(errors) <= {"aborted", "io_error", "device_removed"}, errors
            sc.c.advance(5 * S)  # past ctrlr_loss_timeout_sec
            late = [sc.q.submit_read(0, 1), sc.q.submit_write(8, bytes(BS))]
            if not sbdev.wait(sc.c, late, timeout_ns=10 * S):
                sc.fail("I/O after ctrlr_loss_timeout_sec hangs: %r" % late)
            assert all(io.status != "success" for io in late), late
            sc.finish()


# ---- replay ----------------------------------------------------------------------------------


def _reset_run(seed):
    sc = Scenario(seed)
    sc.round()
    burst = sc.submit_burst()
    sc.in_flight(burst)
    sc.c.network.reset("target", "initiator")
    sc.settle(burst, allow_errors=True)
    sc.round()
    sc.verify_all()
    out = (sc.c.trace_hash(), sc.c.now(), [io.status for io in sc.ios])
    sc.finish()
    return out


def test_same_seed_same_trace(seed):
    """The reset scenario twice under one seed: the same trace hash, clock and outcomes; a
    different seed gives a different run."""
    a, b = _reset_run(seed), _reset_run(seed)
    assert a == b, "seed %d does not replay: %s vs %s" % (seed, a[:2], b[:2])
    assert _reset_run(seed + 1)[0] != a[0]


# ---- bugs found by these scenarios (regression tests) ------------------------------------------


def test_the_checker_notices_a_lost_write(scenario, seed):
    """Canary: a block changed behind the model's back fails verify_all, so a lost or
    misplaced write would not pass unnoticed."""
    sc = scenario(seed)
    sc.round()
    lba = next(iter(sorted(sc.may)))
    sc.dev.write(lba, b"\xee" * BS)  # not through the model
    with pytest.raises(pytest.fail.Exception, match="seed %d: block %d holds" % (seed, lba)):
        sc.verify_all()


def test_qd8_32k_writes_all_complete(scenario, seed):
    """Regression: the target's receive loop (TcpConn::process_rx) stopped after 16 read rounds
    without parsing what the last round read, so the last of 8 outstanding 32-KiB writes
    (R2T + H2CData) sat in its buffer until more bytes came (found by this file; fixed on main
    by 825ca1a, which parses before it stops)."""
    sc = scenario(seed)
    sbdev.wait(sc.c, [sc.q.submit_read(0, 1)], timeout_ns=S)  # the I/O qpair is connected
    ios = [sc.q.submit_write(i * 64, bytes([i + 1]) * (64 * BS)) for i in range(8)]
    done = sbdev.wait(sc.c, ios, timeout_ns=2 * S)
    executed = sc.tgt.rpc("bdev_get_iostat", name="Malloc0")["bdevs"][0]["num_write_ops"]
    assert done, "seed %d: %d of 8 writes completed within 2 s, the target executed %d" % (
        seed, sum(io.done for io in ios), executed)
    assert all(io.ok for io in ios)


def test_io_aborted_by_a_connection_reset_is_retried(scenario, seed):
    """Regression: I/O outstanding when the connection was lost completed 'aborted'
    (kStatusResetAborted) although the controller reconnected at once (ctrlr_loss_timeout_sec
    -1). bdev_nvme now holds it and resubmits it after the reconnect, as SPDK's does
    (bdev_retry_count); it fails only once the path is truly gone."""
    sc = scenario(seed)
    sc.round()
    burst = sc.submit_burst()
    sc.in_flight(burst)
    sc.c.network.reset("target", "initiator")
    errors = sc.settle(burst, allow_errors=True)
    assert not errors, "seed %d: %d of %d outstanding I/Os failed: %s" % (
        seed, len(errors), len(burst), sorted(set(errors)))
