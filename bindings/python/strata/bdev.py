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

    def __repr__(self):
        return "Bdev(%r)" % (self.name,)
