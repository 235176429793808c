"""strata.iscsi: an iSCSI initiator on a host of a strata.Cluster (or a World), for scenarios.

    with strata.Cluster(seed) as c:
        tgt, ini = c.host("target"), c.host("initiator")
        t = iscsi.Target(tgt, ["Malloc0"])                   # portal group, initiator group, node
        s = iscsi.Initiator(ini, tgt.address, target=t.name)  # connects and logs in (posted)
        assert s.wait_login(c)
        io = s.submit_write(0, lba=0, data=b"\\xab" * 4096)    # posted; runs as the simulation runs
        assert iscsi.wait(c, [io]) and io.status == "good"
        assert s.read(c, 0, 0, 8) == b"\\xab" * 4096

The initiator is core/iscsi/testing's (C++): one connection over the host's sockets (the
cluster's simulated network), RFC 7143 login (discovery or normal session, CHAP one-way or
mutual, CRC32C digests, ImmediateData / InitialR2T / burst lengths settable), SCSI commands
with many outstanding, task management, NOP-Out pings and an optional keep-alive, logout, and
hooks that corrupt bytes for negative tests. Every submit_* posts work to the host's
"iscsi_initiator" Thread and returns an Io at once; run the cluster (wait(), run_until) to move
it. Reading an Io or the Initiator's state does not call into the World, so it is allowed in a
run_until predicate.

A connection that fails (reset, digest error, protocol error, NOP timeout) completes every
outstanding Io once with an error status ("io_error") and leaves the Initiator "failed": make a
new Initiator to log in again (same isid= to reinstate the session).

missing(world) says what a build lacks for the target side (the iscsi_* RPCs), so scenarios can
skip with the reason.
"""

DEFAULT_PORT = 3260
DEFAULT_NODE_BASE = "iqn.2016-06.io.spdk"

TARGET_METHODS = ("iscsi_create_portal_group", "iscsi_create_initiator_group",
                  "iscsi_create_target_node")


def missing(world):
    """What this build lacks for iSCSI target scenarios: a list of reasons (empty: nothing)."""
    methods = set(world.rpc("rpc_get_methods"))
    absent = [m for m in TARGET_METHODS if m not in methods]
    if absent:
        return ["the iSCSI target's RPCs: no " + ", ".join(absent)]
    return []


class Target:
    """An iSCSI target node on `world` set up with SPDK's RPCs: portal group `pg_tag` at
    world.address:port, an initiator group allowing any initiator, target node `name` (short:
    node_base + ":" + name is the IQN) with LUN i backed by bdevs[i]."""

    def __init__(self, world, bdevs, name="disk1", port=DEFAULT_PORT, pg_tag=1, ig_tag=1,
                 chap=None, header_digest=False, data_digest=False, queue_depth=64):
        self.world, self.port, self.short_name = world, port, name
        self.address = world.address or "127.0.0.1"
        self.name = name if ":" in name else DEFAULT_NODE_BASE + ":" + name
        world.rpc("iscsi_create_portal_group", tag=pg_tag,
                  portals=[{"host": self.address, "port": str(port)}])
        world.rpc("iscsi_create_initiator_group", tag=ig_tag, initiators=["ANY"],
                  netmasks=["ANY"])
        params = dict(name=name, alias_name=name,
                      pg_ig_maps=[{"pg_tag": pg_tag, "ig_tag": ig_tag}],
                      luns=[{"bdev_name": b, "lun_id": i} for i, b in enumerate(bdevs)],
                      queue_depth=queue_depth, header_digest=header_digest,
                      data_digest=data_digest)
        if chap:
            params.update(chap)
        world.rpc("iscsi_create_target_node", **params)


class IscsiError(Exception):
    """An operation that did not end "good". Attributes: io (the Io)."""

    def __init__(self, io):
        self.io = io
        super().__init__("iscsi %s: %s (scsi status %s, sense %x/%02x/%02x%s%s)" % (
            io.op, io.status, io.scsi_status, io.sense_key, io.asc, io.ascq,
            ", refused: %s" % io.refusal if io.refusal else "",
            ", %s" % io.error if io.error else ""))


class Io:
    """One operation. done, status ("pending", "good", "check_condition", "refused",
    "io_error" (connection lost), "aborted" (task management), "tmf_response", ...),
    completions (0 or 1), scsi_status, sense_key/asc/ascq, residual, data (a good read's bytes),
    response (the TMF response), targets (SendTargets), refusal, error (the connection's)."""

    __slots__ = ("_n",)

    def __init__(self, native):
        self._n = native

    def __getattr__(self, name):
        return getattr(self._n, name)

    @property
    def ok(self):
        return self._n.status == "good"

    def result(self):
        """A good read's bytes (None for others); raises IscsiError otherwise."""
        if self._n.status != "good":
            raise IscsiError(self._n)
        return self._n.data

    def __repr__(self):
        n = self._n
        return "iscsi.Io(#%d %s lun %d lba %d+%d: %s)" % (n.id, n.op, n.lun, n.lba, n.blocks,
                                                         n.status)


def wait(driver, ios, timeout_ns=None, max_steps=None):
    """Runs `driver` (World or Cluster) until every Io is done; returns whether they all are."""
    pending = [io._n if isinstance(io, Io) else io for io in ios]

    def all_done():
        pending[:] = [n for n in pending if not n.done]
        return not pending

    return driver.run_until(all_done, timeout_ns=timeout_ns, max_steps=max_steps)


class Initiator:
    """One iSCSI connection from `world` to address:port, logging in as soon as the simulation
    runs. target=None opens a discovery session. Options (all optional): initiator_name,
    chap_user, chap_secret, chap_muser, chap_msecret, header_digest, data_digest,
    immediate_data, initial_r2t, first_burst_length, max_burst_length,
    max_recv_data_segment_length, queue_depth, nop_interval_ms, nop_timeout_ms, isid (48-bit
    int), seed."""

    def __init__(self, world, address, port=DEFAULT_PORT, target=None, **options):
        self.world = world
        cluster = getattr(world, "cluster", None)
        if cluster is not None and address in cluster.hosts:  # a host name of the cluster
            address = cluster.hosts[address].address
        opts = dict(options)
        opts.update(address=address, port=port, target=target or "")
        self._n = world._iscsi_connect(opts)

    # ---- state -------------------------------------------------------------------------------
    login_state = property(lambda self: self._n.login, doc="pending, ok or failed")
    login_error = property(lambda self: self._n.login_error)
    state = property(lambda self: self._n.state,
                     doc="idle, connecting, login, full_feature, logging_out, closed, failed")
    error = property(lambda self: self._n.error, doc="why the connection ended")
    outstanding = property(lambda self: self._n.outstanding)
    info = property(lambda self: self._n.info, doc="the negotiated session (a dict)")
    stats = property(lambda self: self._n.stats)
    corrupted_tx = property(lambda self: self._n.corrupted_tx)
    corrupted_rx = property(lambda self: self._n.corrupted_rx)

    def wait_login(self, driver, timeout_ns=10 * 10**9):
        """Runs until the login finished; True when it succeeded."""
        driver.run_until(lambda: self._n.login != "pending", timeout_ns=timeout_ns)
        return self._n.login == "ok"

    # ---- asynchronous operations ------------------------------------------------------------
    def _submit(self, op, **args):
        return Io(self.world._iscsi_submit(self._n, op, args))

    def submit_read(self, lun, lba, blocks, block_size=512, use16=False):
        return self._submit("read", lun=lun, lba=lba, blocks=blocks, block_size=block_size,
                            use16=use16)

    def submit_write(self, lun, lba, data, block_size=512, use16=False, fua=False):
        return self._submit("write", lun=lun, lba=lba, data=bytes(data), block_size=block_size,
                            use16=use16, fua=fua)

    def submit_cdb(self, cdb, lun=0, dir="none", length=0, data=None):
        """A generic CDB; dir "read" (length bytes in), "write" (data out) or "none"."""
        return self._submit("cdb", lun=lun, cdb=bytes(cdb), dir=dir, length=length,
                            data=None if data is None else bytes(data))

    def submit_test_unit_ready(self, lun=0):
        return self._submit("test_unit_ready", lun=lun)

    def submit_inquiry(self, lun=0, evpd=False, page=0, length=96):
        return self._submit("inquiry", lun=lun, evpd=evpd, page=page, length=length)

    def submit_read_capacity16(self, lun=0):
        return self._submit("read_capacity16", lun=lun)

    def submit_report_luns(self, length=4096):
        return self._submit("report_luns", length=length)

    def submit_synchronize_cache(self, lun=0):
        return self._submit("synchronize_cache", lun=lun)

    def submit_abort_task(self, io, lun=0):
        """ABORT TASK for `io` (an Io of this Initiator, already submitted)."""
        return self._submit("abort_task", lun=lun, ref_itt=(io._n if isinstance(io, Io) else io).itt)

    def submit_lun_reset(self, lun=0):
        return self._submit("lun_reset", lun=lun)

    def submit_ping(self, data=b""):
        return self._submit("ping", data=bytes(data))

    def submit_send_targets(self, what="All"):
        return self._submit("send_targets", what=what)

    def submit_logout(self):
        return self._submit("logout")

    # ---- synchronous conveniences (run `driver` until done) ---------------------------------
    def _run(self, driver, io, timeout_ns):
        if not wait(driver, [io], timeout_ns=timeout_ns):
            raise TimeoutError("iscsi %s did not complete within %d ns" % (io.op, timeout_ns))
        return io.result()

    def read(self, driver, lun, lba, blocks, block_size=512, timeout_ns=10 * 10**9):
        return self._run(driver, self.submit_read(lun, lba, blocks, block_size), timeout_ns)

    def write(self, driver, lun, lba, data, block_size=512, timeout_ns=10 * 10**9):
        self._run(driver, self.submit_write(lun, lba, data, block_size), timeout_ns)

    def send_targets(self, driver, what="All", timeout_ns=10 * 10**9):
        io = self.submit_send_targets(what)
        self._run(driver, io, timeout_ns)
        return io.targets

    def read_capacity(self, driver, lun=0, timeout_ns=10 * 10**9):
        """(num_blocks, block_size) from READ CAPACITY(16)."""
        d = self._run(driver, self.submit_read_capacity16(lun), timeout_ns)
        return int.from_bytes(d[0:8], "big") + 1, int.from_bytes(d[8:12], "big")

    def logout(self, driver, timeout_ns=10 * 10**9):
        self._run(driver, self.submit_logout(), timeout_ns)

    # ---- control ------------------------------------------------------------------------------
    def drop(self, abort=True):
        """Drops the connection now (the target sees a reset); outstanding Ios fail."""
        self.world._iscsi_control(self._n, "drop", {"abort": abort})

    def close(self):
        """Destroys the initiator (abortive close of its connection)."""
        self.world._iscsi_control(self._n, "close", {})

    def corrupt_tx(self, offset, opcode=None, xor=1, count=1):
        """Flips `xor` into byte `offset` (BHS = 0..47, then header digest, data...) of the next
        `count` outgoing PDUs with `opcode` (0x05 Data-Out, 0x01 SCSI Command; None: any),
        after their digests were computed."""
        self.world._iscsi_control(self._n, "corrupt_tx", {
            "offset": offset, "opcode": -1 if opcode is None else opcode, "xor": xor,
            "count": count})

    def corrupt_rx(self, after, xor=1):
        """Flips `xor` into the received byte `after` bytes from now (before parsing)."""
        self.world._iscsi_control(self._n, "corrupt_rx", {"after": after, "xor": xor})

    def __repr__(self):
        return "iscsi.Initiator(%s, %s)" % (self.state, self.error or "ok")
