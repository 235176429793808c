"""strata.bdev: a typed layer over bdevs of a World.

    w = strata.World(seed=1)
    w.rpc("bdev_malloc_create", name="Malloc0", num_blocks=1024, block_size=512)
    d = w.bdev("Malloc0")
    d.write(0, b"\\xab" * 512)
    assert d.read(0, 1) == b"\\xab" * 512
    d.info()["num_blocks"]        # bdev_get_bdevs
    d.iostat()["num_read_ops"]    # bdev_get_iostat

Each call is one I/O through the bdev layer on the World's simulator (open, I/O, close). An I/O
that completes with an error raises BdevIoError naming the error class and, for NVMe-backed
bdevs, the NVMe status.

Asynchronous I/O keeps many I/Os outstanding while the harness injects faults:

    ios = [d.submit_write(lba, data) for lba, data in extents]   # posted, nothing ran yet
    ios.append(d.submit_read(0, 8))
    w.run_until(lambda: all(io.started for io in ios))  # submitted now: in flight
    cluster.network.reset("target", "initiator")
    assert strata.bdev.wait(w, ios, timeout_ns=10**10)  # every one done (or False)
    ios[0].status         # "success", "pending", "refused" or the error class ("io_error", ...)
    ios[-1].result()      # bytes for a read; raises BdevIoError / BdevIoRefused on failure

No Python thread is involved: each submit posts a message to a Thread of the host (the app
Thread unless thread= names another); when the simulation runs, that Thread opens the bdev
and submits, and the bdev layer completes the I/O there. Reading a handle's state does not
call into the World, so it is allowed inside a run_until predicate.
"""


class BdevIoError(Exception):
    """An I/O completed with an error.

    Attributes: bdev, op, errc ("io_error", "corrupt" for a miscompare, ...), nvme_status
    (SCT << 8 | SC for NVMe-backed bdevs, else 0), sct, sc.
    """

    def __init__(self, bdev, op, errc, nvme_status):
        self.bdev = bdev
        self.op = op
        self.errc = errc
        self.nvme_status = int(nvme_status)
        self.sct = self.nvme_status >> 8
        self.sc = self.nvme_status & 0xFF
        detail = " (NVMe status sct 0x%x sc 0x%02x)" % (self.sct, self.sc) if self.nvme_status else ""
        super().__init__("bdev %s: %s failed: %s%s" % (bdev, op, errc, detail))


class BdevIoRefused(Exception):
    """The bdev layer refused an I/O at submission (no such bdev, being removed, out of range,
    pool empty, ...): it never ran. Attributes: bdev, op, reason."""

    def __init__(self, bdev, op, reason):
        self.bdev, self.op, self.reason = bdev, op, reason
        super().__init__("bdev %s: %s refused: %s" % (bdev, op, reason))


class Io:
    """One asynchronous bdev I/O (Bdev.submit_read/submit_write/submit). Read-only; its state
    changes as the simulation runs.

    done        completed, or refused at submission
    started     the submit message ran on its Thread (the I/O is in the bdev layer, or refused)
    status      "pending", "success", "refused", "abandoned" (its World closed first) or the
                error class it completed with ("io_error", "aborted", "device_removed", ...)
    completions how many times the bdev layer completed it: 0 or 1 (2 would be a bug, and is
                counted rather than lost)
    nvme_status SCT << 8 | SC for NVMe-backed bdevs (0 on success or elsewhere)
    refusal     why it was refused, else None
    data        a successful read's bytes, else None
    latency_ns  from submission to completion (None while pending)
    """

    __slots__ = ("_n",)

    def __init__(self, native):
        self._n = native

    @property
    def done(self):
        return self._n.done

    @property
    def started(self):
        return self._n.started

    @property
    def status(self):
        return self._n.status

    @property
    def ok(self):
        return self._n.status == "success"

    @property
    def completions(self):
        return self._n.completions

    @property
    def nvme_status(self):
        return self._n.nvme_status

    @property
    def refusal(self):
        return self._n.refusal

    @property
    def data(self):
        return self._n.data

    @property
    def latency_ns(self):
        n = self._n
        return n.completed_ns - n.submitted_ns if n.completions else None

    bdev = property(lambda self: self._n.bdev)
    op = property(lambda self: self._n.op)
    offset_blocks = property(lambda self: self._n.offset_blocks)
    num_blocks = property(lambda self: self._n.num_blocks)
    thread = property(lambda self: self._n.thread)
    id = property(lambda self: self._n.id)

    def result(self):
        """A read's bytes, None for other operations; raises BdevIoError when it completed
        with an error, BdevIoRefused when it was refused, RuntimeError while pending."""
        n = self._n
        st = n.status
        if st == "success":
            return n.data if n.op == "read" else None
        if st == "refused":
            raise BdevIoRefused(n.bdev, n.op, n.refusal)
        if st in ("pending", "abandoned"):
            raise RuntimeError("bdev %s: %s #%d is %s" % (n.bdev, n.op, n.id, st))
        raise BdevIoError(n.bdev, n.op, st, n.nvme_status)

    def __repr__(self):
        n = self._n
        return "Io(#%d %s %s %d+%d: %s)" % (n.id, n.bdev, n.op, n.offset_blocks, n.num_blocks,
                                           n.status)


class Queue:
    """A descriptor and channel of one bdev held open on one Thread (Bdev.queue()). I/O
    submitted through it shares that channel from burst to burst -- for an NVMe bdev one qpair
    and, over NVMe/TCP, one connection -- as an application's I/O would; Bdev.submit_* instead
    open a descriptor per I/O, and an NVMe bdev then makes a fresh qpair for every burst.

    state: "opening" (posted), "open", "closing", "closed" or "failed" (error says why). It
    closes on close(), when its bdev is being removed (removed is then True) or when its World
    stops, each time once its I/O has completed; I/O submitted after that is refused.
    outstanding, submitted, completed: counts of its I/O.
    """

    __slots__ = ("_bdev", "_n")

    def __init__(self, bdev, native):
        self._bdev, self._n = bdev, native

    state = property(lambda self: self._n.state)
    error = property(lambda self: self._n.error)
    removed = property(lambda self: self._n.removed)
    outstanding = property(lambda self: self._n.outstanding)
    submitted = property(lambda self: self._n.submitted)
    completed = property(lambda self: self._n.completed)
    thread = property(lambda self: self._n.thread)
    bdev = property(lambda self: self._bdev)

    @property
    def closed(self):
        return self._n.state in ("closed", "failed")

    def submit(self, op, offset_blocks=0, num_blocks=0, data=None, data2=None):
        """As Bdev.submit, on this queue's descriptor, channel and Thread."""
        w = self._bdev.world
        return Io(w.bdev_submit(self._bdev.name, op, offset_blocks, num_blocks,
                                None if data is None else bytes(data),
                                None if data2 is None else bytes(data2), None, self._n))

    def submit_read(self, offset_blocks, num_blocks):
        return self.submit("read", offset_blocks, num_blocks)

    def submit_write(self, offset_blocks, data):
        return self.submit("write", offset_blocks, 0, data)

    def close(self):
        """Posts the close: it happens once the queue's I/O has completed (run the simulation
        until .closed)."""
        self._bdev.world.bdev_queue_close(self._n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._bdev.world.closed and not self.closed:
            self.close()
        return False

    def __repr__(self):
        n = self._n
        return "Queue(%s on %s: %s, %d outstanding)" % (n.bdev, n.thread, n.state, n.outstanding)


def wait(driver, ios, timeout_ns=None, max_steps=None):
    """Runs `driver` (a World or a Cluster) until every Io in `ios` is done; returns whether
    they all are (False: the timeout or step budget ran out, or the simulation went idle)."""
    pending = [io._n for io in ios]

    def all_done():
        pending[:] = [n for n in pending if not n.done]
        return not pending

    return driver.run_until(all_done, timeout_ns=timeout_ns, max_steps=max_steps)


class Bdev:
    """A bdev of a World by name; see the module docstring."""

    def __init__(self, world, name):
        self.world = world
        self.name = name

    def _io(self, op, offset_blocks=0, num_blocks=0, data=None, data2=None):
        r = self.world.bdev_io(self.name, op, offset_blocks, num_blocks, data, data2)
        if isinstance(r, dict):
            raise BdevIoError(self.name, op, r["errc"], r["nvme_status"])
        return r

    def info(self):
        return self.world.rpc("bdev_get_bdevs", name=self.name)[0]

    @property
    def block_size(self):
        return self.info()["block_size"]

    @property
    def num_blocks(self):
        return self.info()["num_blocks"]

    def iostat(self):
        return self.world.rpc("bdev_get_iostat", name=self.name)["bdevs"][0]

    def read(self, offset_blocks, num_blocks):
        """Returns num_blocks blocks from offset_blocks as bytes."""
        return self._io("read", offset_blocks, num_blocks)

    def write(self, offset_blocks, data):
        """Writes data (a whole number of blocks) at offset_blocks."""
        data = bytes(data)
        bs = self.block_size
        if len(data) == 0 or len(data) % bs:
            raise ValueError("data must be a positive multiple of the block size (%d)" % bs)
        self._io("write", offset_blocks, len(data) // bs, data)

    def compare(self, offset_blocks, data):
        """True when the blocks equal data, False on a miscompare."""
        data = bytes(data)
        try:
            self._io("compare", offset_blocks, len(data) // self.block_size, data)
            return True
        except BdevIoError as e:
            if e.errc == "corrupt":
                return False
            raise

    def compare_and_write(self, offset_blocks, expected, data):
        """Writes data only if the blocks equal expected; returns whether it wrote."""
        expected, data = bytes(expected), bytes(data)
        try:
            self._io("compare_and_write", offset_blocks, len(data) // self.block_size, expected, data)
            return True
        except BdevIoError as e:
            if e.errc == "corrupt":
                return False
            raise

    def write_zeroes(self, offset_blocks, num_blocks):
        self._io("write_zeroes", offset_blocks, num_blocks)

    def unmap(self, offset_blocks, num_blocks):
        self._io("unmap", offset_blocks, num_blocks)

    def flush(self, offset_blocks=0, num_blocks=None):
        self._io("flush", offset_blocks, self.num_blocks - offset_blocks if num_blocks is None else num_blocks)

    def reset(self):
        self._io("reset")

    # ---- asynchronous I/O: see Io and the module docstring --------------------------------

    def submit(self, op, offset_blocks=0, num_blocks=0, data=None, data2=None, thread=None):
        """Posts one I/O (read, write, compare, compare_and_write, write_zeroes, unmap, flush,
        reset) to `thread` (a Thread name of this host; default the app Thread) and returns
        its Io at once. For write/compare, num_blocks 0 means len(data) // block_size (data
        that is not a whole number of blocks is refused)."""
        if data is not None:
            data = bytes(data)
        if data2 is not None:
            data2 = bytes(data2)
        return Io(self.world.bdev_submit(self.name, op, offset_blocks, num_blocks, data, data2,
                                         thread))

    def submit_read(self, offset_blocks, num_blocks, thread=None):
        return self.submit("read", offset_blocks, num_blocks, thread=thread)

    def queue(self, thread=None, write=True):
        """Opens a Queue (a descriptor and channel held open) on `thread` (default the app
        Thread); the opening is posted and happens when the simulation next runs, before any
        I/O submitted through it. write=False opens read-only (a claimed bdev allows that)."""
        return Queue(self, self.world.bdev_queue(self.name, bool(write), thread))

    def submit_write(self, offset_blocks, data, thread=None):
        """data: a whole number of blocks (checked by the bdev layer: refused otherwise)."""
        return self.submit("write", offset_blocks, 0, data, thread=thread)

    def __repr__(self):
        return "Bdev(%r)" % (self.name,)
