"""strata.nvme: emulated NVMe controllers in a World, and the NVMe driver attached to them.

    w = strata.World(seed=7)
    dev = w.add_nvme("0000:01:00.0",
                     namespaces=[{"nsid": 1, "size": 64 << 20, "block_size": 512}],
                     latency={"read": ("fixed", 80_000), "write": ("uniform", 10_000, 30_000)})
    ctrl = w.nvme_attach("0000:01:00.0")          # the driver (core/nvme) on the model
    ctrl.identify()["mn"]                         # 'Strata Emulated NVMe Controller'
    ctrl.write(1, 0, b"\\xab" * 512)
    ctrl.flush(1)
    assert ctrl.read(1, 0, 1) == b"\\xab" * 512
    dev.faults.add({"action": "error_status", "opcode": 2, "sct": 2, "sc": 0x81})
    ctrl.read(1, 0, 1)                            # raises NvmeError (UNRECOVERED READ ERROR)
    dev.power_cut()                               # unflushed writes are lost
    ctrl.detach()

Everything runs on the World's simulator (virtual time, the World's seed): the model on the
World's "devices" Thread, the driver on an "nvme_host" Thread. A command that completes with
an error raises NvmeError carrying the NVMe status; one that does not complete within
`timeout_ns` of virtual time raises NvmeTimeout (the command stays outstanding in the driver
and completes, unseen, later: on a reset or detach at the latest).
"""

OPCODES = {"flush": 0x00, "write": 0x01, "read": 0x02, "compare": 0x05, "write_zeroes": 0x08,
           "dsm": 0x09}
_LATENCY_KINDS = {"fixed": "fixed", "uniform": "uniform", "exponential": "exponential",
                  "exp": "exponential"}
DEFAULT_IO_TIMEOUT_NS = 60 * 1_000_000_000


class NvmeError(Exception):
    """An NVMe command completed with an error status.

    Attributes: address, op, nsid, lba, status (SCT << 8 | SC), sct, sc, dnr, name (the
    specification's name of the status, e.g. "UNRECOVERED READ ERROR"), errc (the nearest
    Strata error class: "io_error", "out_of_range", "aborted", "device_removed", ...).
    """

    def __init__(self, address, op, nsid, lba, err):
        self.address, self.op, self.nsid, self.lba = address, op, nsid, lba
        self.status = int(err["status"])
        self.sct, self.sc = int(err["sct"]), int(err["sc"])
        self.dnr = bool(err["dnr"])
        self.name = err["name"]
        self.errc = err["errc"]
        where = "" if lba is None else " lba %d" % lba
        super().__init__("nvme %s: %s nsid %d%s failed: %s (sct 0x%x, sc 0x%02x%s)" % (
            address, op, nsid, where, self.name, self.sct, self.sc, ", dnr" if self.dnr else ""))


class NvmeTimeout(Exception):
    """No completion within the call's timeout (virtual time)."""


class NvmeSubmitError(Exception):
    """The driver refused the command at submission (e.g. device_removed, invalid_argument).

    Attributes: errc."""

    def __init__(self, address, op, errc, message):
        self.errc = errc
        super().__init__("nvme %s: %s refused: %s" % (address, op, message))


def _latency_spec(op, spec):
    """(kind, a_ns[, b_ns]) / int ns (fixed) / {"kind":..., "a_ns":..., "b_ns":...}."""
    if isinstance(spec, int):
        return ["fixed", spec, 0]
    if isinstance(spec, dict):
        kind = spec.get("kind", "fixed")
        a = spec.get("a_ns", spec.get("mean_ns", spec.get("ns", 0)))
        b = spec.get("b_ns", 0)
    elif isinstance(spec, (tuple, list)) and 2 <= len(spec) <= 3:
        kind, a = spec[0], spec[1]
        b = spec[2] if len(spec) == 3 else 0
    else:
        raise ValueError("latency[%r]: expected ns, (kind, a_ns[, b_ns]) or a dict" % (op,))
    if kind not in _LATENCY_KINDS:
        raise ValueError("latency[%r]: kind must be fixed, uniform or exponential" % (op,))
    if not isinstance(a, int) or not isinstance(b, int) or a < 0 or b < 0:
        raise ValueError("latency[%r]: durations are non-negative integers (ns)" % (op,))
    return [_LATENCY_KINDS[kind], a, b]


def _namespace(ns):
    if not isinstance(ns, dict):
        raise TypeError("a namespace is a dict such as {'nsid': 1, 'size': 1 << 30, 'block_size': 512}")
    unknown = set(ns) - {"nsid", "size", "num_blocks", "block_size", "backing_file"}
    if unknown:
        raise ValueError("namespace: unknown key(s) %s" % ", ".join(sorted(unknown)))
    bs = ns.get("block_size", 512)
    out = {"nsid": ns.get("nsid", 1), "block_size": bs}
    if "size" in ns and "num_blocks" in ns:
        raise ValueError("namespace: give size or num_blocks, not both")
    if "size" in ns:
        if ns["size"] <= 0 or ns["size"] % bs:
            raise ValueError("namespace %d: size %d is not a positive multiple of the block size %d"
                             % (out["nsid"], ns["size"], bs))
        out["num_blocks"] = ns["size"] // bs
    elif "num_blocks" in ns:
        out["num_blocks"] = ns["num_blocks"]
    if "backing_file" in ns:
        import os
        out["backing_file"] = os.fspath(ns["backing_file"])
    return out


def add_nvme(world, address="0000:01:00.0", namespaces=None, latency=None, faults=None,
             mdts=None, sgl=None, serial=None, zero_latency=False, **options):
    """Creates the controller model on the World's emulated bus (see World.add_nvme)."""
    cfg = {}
    if namespaces is not None:
        cfg["namespaces"] = [_namespace(n) for n in namespaces]
    if latency:
        lat = {}
        for op, spec in latency.items():
            code = OPCODES.get(op, op)
            if not isinstance(code, int):
                raise ValueError("latency: unknown opcode %r (%s or a number)" % (op, ", ".join(OPCODES)))
            lat[str(code)] = _latency_spec(op, spec)
        cfg["latency"] = lat
    if faults:
        cfg["faults"] = list(faults)
    if mdts is not None:
        cfg["mdts"] = mdts
    if sgl is not None:
        cfg["sgl"] = bool(sgl)
    if serial is not None:
        cfg["serial"] = serial
    if zero_latency:
        cfg["zero_latency"] = True
    cfg.update(options)  # model, firmware, max_queue_entries, max_io_queues, enable_delay_ns, ...
    world._add_nvme(address, cfg)
    return NvmeDevice(world, address)


class Faults:
    """The model's fault plan (hw-emulation/faults rules in their JSON form)."""

    def __init__(self, device):
        self._dev = device

    def add(self, rule):
        """Adds a rule, e.g. {"action": "error_status", "opcode": 2, "lba_first": 0,
        "lba_last": 9, "nth": 1, "sct": 2, "sc": 0x81}; returns its id. Actions: error_status,
        delay (delay_us), drop_completion, corrupt_read, fatal_status, surprise_remove,
        power_cut (torn)."""
        if not isinstance(rule, dict):
            raise TypeError("a fault rule is a dict")
        return self._dev._op("fault_add", rule)

    def remove(self, rule_id):
        """Removes a rule by id; False when there was none."""
        return self._dev._op("fault_remove", int(rule_id))

    def clear(self):
        self._dev._op("fault_clear")

    def list(self):
        """The rules with their id, matched and hits counters."""
        return self._dev._op("fault_list")

    def __len__(self):
        return len(self.list())


class NvmeDevice:
    """The emulated controller at `address` (hw-emulation/nvme)."""

    def __init__(self, world, address):
        self.world = world
        self.address = address
        self.faults = Faults(self)

    def _op(self, op, arg=None):
        return self.world._nvme_device(self.address, op, arg)

    @property
    def stats(self):
        """commands, admin_commands, completions, doorbell_writes, dropped_completions,
        injected_errors, invalid_doorbells, dma_faults, held_completions."""
        return self._op("stats")

    def power_cut(self, torn=False):
        """Power loss: unflushed writes are lost (torn: each may keep a random prefix of its
        sectors), in-flight commands vanish, the controller is back in its reset state."""
        self._op("power_cut", bool(torn))

    def set_zero_latency(self, on=True):
        self._op("set_zero_latency", bool(on))

    def add_namespace(self, nsid, size=None, block_size=512, num_blocks=None, backing_file=None):
        """Adds a namespace (raises a namespace-attribute-changed event)."""
        ns = {"nsid": nsid, "block_size": block_size}
        if size is not None:
            ns["size"] = size
        if num_blocks is not None:
            ns["num_blocks"] = num_blocks
        if backing_file is not None:
            ns["backing_file"] = backing_file
        self._op("add_namespace", _namespace(ns))

    def remove_namespace(self, nsid):
        self._op("remove_namespace", int(nsid))

    def surprise_remove(self):
        """Unplugs the function: BAR reads return all-ones, the driver gets its hot-remove."""
        self.world.surprise_remove(self.address)

    def __repr__(self):
        return "NvmeDevice(%s)" % self.address


class NvmeController:
    """The NVMe driver (core/nvme) attached to the controller at `address`, with one I/O
    qpair. LBAs and block counts are in the namespace's blocks; data is bytes."""

    def __init__(self, world, address):
        self.world = world
        self.address = address

    def _call(self, op, arg=None, timeout_ns=DEFAULT_IO_TIMEOUT_NS, nsid=1, lba=None, data=None):
        r = self.world._nvme_host(self.address, op, arg, data, timeout_ns)
        if isinstance(r, dict) and op not in ("identify", "stats"):
            if r.get("timeout"):
                raise NvmeTimeout("nvme %s: %s nsid %d: no completion within %d ns" % (
                    self.address, op, nsid, timeout_ns))
            if "submit_error" in r:
                raise NvmeSubmitError(self.address, op, r["submit_error"], r["message"])
            raise NvmeError(self.address, op, nsid, lba, r)
        return r

    def identify(self):
        """Identify Controller fields (nvme-cli names: vid, sn, mn, fr, mdts, nn, oncs, vwc,
        sgls, ...) plus max_transfer_bytes, io_queues and state."""
        return self._call("identify")

    def namespaces(self):
        """Active namespaces: nsid, block_size, num_blocks, size_bytes, max_io_blocks."""
        return self._call("namespaces")

    def stats(self):
        """Driver counters (resets, timeouts, aborts_sent, ...) and the qpair's."""
        return self._call("stats")

    def read(self, nsid, lba, nblocks, fua=False, timeout_ns=DEFAULT_IO_TIMEOUT_NS):
        return self._call("read", {"nsid": nsid, "lba": lba, "blocks": nblocks, "fua": fua},
                          timeout_ns, nsid, lba)

    def write(self, nsid, lba, data, fua=False, timeout_ns=DEFAULT_IO_TIMEOUT_NS):
        self._call("write", {"nsid": nsid, "lba": lba, "fua": fua}, timeout_ns, nsid, lba,
                   bytes(data))

    def compare(self, nsid, lba, data, timeout_ns=DEFAULT_IO_TIMEOUT_NS):
        """Raises NvmeError (COMPARE FAILURE) when the data differs."""
        self._call("compare", {"nsid": nsid, "lba": lba}, timeout_ns, nsid, lba, bytes(data))

    def flush(self, nsid=1, timeout_ns=DEFAULT_IO_TIMEOUT_NS):
        self._call("flush", {"nsid": nsid}, timeout_ns, nsid)

    def write_zeroes(self, nsid, lba, nblocks, deallocate=False, timeout_ns=DEFAULT_IO_TIMEOUT_NS):
        self._call("write_zeroes", {"nsid": nsid, "lba": lba, "blocks": nblocks,
                                    "deallocate": deallocate}, timeout_ns, nsid, lba)

    def deallocate(self, nsid, lba, nblocks, timeout_ns=DEFAULT_IO_TIMEOUT_NS):
        self._call("deallocate", {"nsid": nsid, "lba": lba, "blocks": nblocks}, timeout_ns, nsid, lba)

    def reset(self):
        """Controller reset: outstanding commands complete with ABORTED - SQ DELETION, the
        qpair reconnects. Raises RuntimeError when the controller cannot be brought back."""
        self.world._nvme_host(self.address, "reset")

    def detach(self):
        """Frees the qpair, shuts the controller down (flushing its cache) and releases it."""
        self.world._nvme_host(self.address, "detach")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.detach()
        except KeyError:
            pass  # already detached
        return False

    def __repr__(self):
        return "NvmeController(%s)" % self.address
