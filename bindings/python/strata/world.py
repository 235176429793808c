"""strata.World: an in-process Strata stack on the deterministic simulator.

    w = strata.World(seed=42, reactors=2)
    w.rpc("framework_get_reactors")
    w.advance(1_000_000)        # 1 ms of virtual time
    w.trace_hash()              # equal seeds and equal workloads give equal hashes

Several hosts in one seeded run (an initiator and targets, each its own World with its own
devices and bdevs, on one scheduler): see strata.Cluster.

A World is single-threaded: drive it from one Python thread at a time (a second thread, or a
run_until predicate that calls back into the World, gets a RuntimeError). The simulation runs
in the calling thread; the GIL is released while it runs and re-acquired for predicates and
log records.
"""

from .errors import RpcError

try:
    import _strata
except ImportError as e:  # pragma: no cover - exercised when the build is missing
    _strata = None
    _IMPORT_ERROR = e
else:
    _IMPORT_ERROR = None

DEFAULT_RPC_TIMEOUT_NS = 60 * 1_000_000_000  # virtual time


def _require_native():
    if _strata is None:
        raise ImportError(
            "the native module _strata is not importable (%s). Build it with "
            "`cmake --preset dev && ninja -C build/dev _strata` and run `source ci/env.sh` "
            "(it puts build/<preset>/bindings on PYTHONPATH)." % _IMPORT_ERROR)
    return _strata


_Base = _strata.World if _strata is not None else object


class World(_Base):
    """World(seed=None, reactors=1, wait_for_rpc=False, config=None)

    seed: None picks a random one (read it back from .seed).
    reactors: simulated reactors (each gets its own Threads, interleaved by the seed).
    wait_for_rpc: stay in the startup state until rpc("framework_start_init"), like
        strata-tgt --wait-for-rpc.
    config: a JSON config ({"subsystems": [...]}, as save_config returns) as a dict, or a
        path to a config file; loaded at start like strata-tgt --json. A bad config raises
        RuntimeError with the loader's message.
    """

    def __init__(self, seed=None, reactors=1, wait_for_rpc=False, config=None, *,
                 _cluster=None, _name="world", _address=None):
        native = _require_native()
        if _cluster is not None:  # strata.Cluster.host(): the cluster's seed and reactors
            seed, reactors = _cluster.seed, _cluster.reactors
        if seed is None:
            import random
            seed = random.SystemRandom().randrange(1, 2**63)
        if not isinstance(seed, int) or seed < 0 or seed >= 2**64:
            raise ValueError("seed must be an integer in [0, 2**64), got %r" % (seed,))
        if not isinstance(reactors, int) or reactors < 1 or reactors > 64:
            raise ValueError("reactors must be an integer in [1, 64], got %r" % (reactors,))
        if config is not None and not isinstance(config, (dict, list)):
            import os
            config = os.fspath(config)
        self._constructed = False
        self.cluster = _cluster
        native.World.__init__(self, seed, reactors, bool(wait_for_rpc), config, _cluster, _name,
                              _address)
        self._constructed = True

    def rpc(self, method, /, **params):
        """Calls `method` through the daemon's method registry, in-process; drives the
        simulation until the response arrives. Returns the result; raises RpcError."""
        return self.rpc_raw(method, params if params else None)

    def rpc_raw(self, method, params=None, timeout_ns=DEFAULT_RPC_TIMEOUT_NS):
        """Like rpc() with a params dict (or list, or None for no "params" member)."""
        resp = self.call(method, params, timeout_ns)
        if "error" in resp:
            raise RpcError.from_error_object(resp["error"], method)
        return resp.get("result")

    def request(self, text, timeout_ns=DEFAULT_RPC_TIMEOUT_NS):
        """Feeds raw request text (one JSON value, possibly malformed, a batch or a
        notification) to the JSON-RPC server as the socket would. Returns the parsed response
        (dict or list) or None when the server sends none (notifications)."""
        out = self.request_all(text, timeout_ns)
        if len(out) > 1:
            raise ValueError("several responses (%d); use request_all()" % len(out))
        return out[0] if out else None

    def request_all(self, text, timeout_ns=DEFAULT_RPC_TIMEOUT_NS):
        """Like request() for text holding several JSON values: a list of every response."""
        import json
        out = self.handle_raw(text, timeout_ns)  # str or bytes (sent as is)
        if out is None:
            return []
        dec, vals, s = json.JSONDecoder(), [], out.strip()
        while s:
            v, end = dec.raw_decode(s)
            vals.append(v)
            s = s[end:].lstrip()
        return vals

    def bdev(self, name):
        """A typed handle on bdev `name` (strata.bdev.Bdev): read/write/compare/flush/..."""
        from .bdev import Bdev
        return Bdev(self, name)

    def add_nvme(self, address="0000:01:00.0", namespaces=None, latency=None, faults=None,
                 mdts=None, sgl=None, serial=None, **options):
        """Adds an emulated NVMe controller (hw-emulation/nvme) to this World's PCI bus and
        returns its strata.nvme.NvmeDevice (faults, power_cut, namespaces, stats, ...).

        namespaces: [{"nsid": 1, "size": bytes (or "num_blocks"), "block_size": 512 or 4096,
            "backing_file": path}] (default: one 1 GiB 512-byte namespace).
        latency: per opcode ("read", "write", "flush", ... or a number): ns (fixed),
            ("fixed", ns), ("uniform", min_ns, max_ns), ("exponential", mean_ns).
        faults: fault rules in the JSON form of hw-emulation/faults.
        mdts, sgl, serial and the other ControllerConfig fields (model, firmware,
            max_queue_entries, max_io_queues, enable_delay_ns, volatile_write_cache, seed,
            zero_latency) as keywords. The model's seed defaults to the World's."""
        from .nvme import add_nvme
        return add_nvme(self, address, namespaces, latency, faults, mdts, sgl, serial, **options)

    def nvme_attach(self, address="0000:01:00.0", timeout_us=0, queue_entries=256, **options):
        """Attaches the NVMe driver (core/nvme) to the controller at `address` with one I/O
        qpair; returns a strata.nvme.NvmeController. timeout_us: the driver's command timeout
        (abort, then reset; 0: none). Other keywords: admin_timeout_us, shutdown_on_detach,
        use_sgl."""
        from .nvme import NvmeController
        opts = {"timeout_us": timeout_us, "queue_entries": queue_entries}
        opts.update(options)
        self._nvme_attach(address, opts)
        return NvmeController(self, address)

    def sock_listen(self, port, echo=False):
        """Listens on `port` with this World's sockets (a Cluster's hosts: the sim network, at
        the host's address) and returns a strata.sock.Listener. echo=True sends every byte
        received on an accepted connection back. A harness for socket-level checks."""
        from .sock import Listener
        return Listener(self, self._sock_listen(port, bool(echo)))

    def sock_connect(self, address, port):
        """Connects to address:port (another host's address, or a host name of the same
        cluster) and returns a strata.sock.Connection (connecting: run the simulation until
        .state is "established")."""
        from .sock import Connection
        if self.cluster is not None and address in self.cluster.hosts:
            address = self.cluster.hosts[address].address
        return Connection(self, self._sock_connect(address, port))

    def run_until(self, predicate, timeout_ns=None, max_steps=None):
        """Steps the simulation until predicate() is true (checked after every step).

        Returns True when it held, False when the world went idle, `timeout_ns` of virtual
        time passed, or `max_steps` steps ran first."""
        if not callable(predicate):
            raise TypeError("predicate must be callable")
        return self._run_until(predicate, timeout_ns, max_steps)

    def __repr__(self):
        if not getattr(self, "_constructed", False):
            return "World(<failed to start>)"  # the native half does not exist: touch nothing
        if self.cluster is not None:
            return "World(host=%r, seed=%d, now=%dns%s)" % (
                self.name, self.seed, self.now(), ", closed" if self.closed else "")
        return "World(seed=%d, reactors=%d, now=%dns, steps=%d)" % (
            self.seed, self.reactors, self.now(), self.steps)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
