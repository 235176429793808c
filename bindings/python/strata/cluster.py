"""strata.Cluster: several simulated hosts in one seeded run.

    with strata.Cluster(seed=42) as c:
        target = c.host("target")          # a strata.World: its own App, bdevs, PCI bus
        initiator = c.host("initiator")
        target.rpc("bdev_malloc_create", name="Malloc0", num_blocks=2048, block_size=512)
        c.advance(1_000_000)               # 1 ms of virtual time, on every host
        c.trace_hash()                     # the whole cluster's run: same seed, same hash

Each host is a strata.World with its own Host (runtime/host.h): its own bdevs, lvol stores,
emulated PCI devices, DMA memory and identifiers; world.rpc() goes to that host's App alone.
All hosts share one SimScheduler: one seed, one virtual clock, one interleaving, one trace hash
(FoundationDB simulates a cluster in one process the same way). Driving any of them -- an RPC
waiting for its reply, world.advance(), cluster.run_until() -- runs every host; world.now(),
world.trace_hash() and world.steps are the cluster's.

Host names must be distinct among the open hosts: a host's identifiers (bdev and lvol UUIDs)
come from the seed and its name (Host::seed_for), so a name is a replayable identity. Closing
a host (world.close()) stops its App and frees its Threads while the others run on; its name
may then be used again, which is how a scenario restarts a host (same name, same UUID stream).
The simulator outlives every host on it. Like a World, a Cluster is single-threaded: one Python
thread drives it at a time, and a run_until predicate must not call back into any of its hosts.
"""

from .world import _require_native, _strata

_Base = _strata.Cluster if _strata is not None else object


class Cluster(_Base):
    """Cluster(seed=None, reactors=1)

    seed: None picks a random one (read it back from .seed).
    reactors: simulated reactors, shared by every host (each host's Threads are placed on
        them round-robin, as on one machine's cores).
    """

    def __init__(self, seed=None, reactors=1):
        native = _require_native()
        if seed is None:
            import random
            seed = random.SystemRandom().randrange(1, 2**63)
        if not isinstance(seed, int) or seed < 0 or seed >= 2**64:
            raise ValueError("seed must be an integer in [0, 2**64), got %r" % (seed,))
        if not isinstance(reactors, int) or reactors < 1 or reactors > 64:
            raise ValueError("reactors must be an integer in [1, 64], got %r" % (reactors,))
        native.Cluster.__init__(self, seed, reactors)
        self._hosts = {}  # name -> World, open or closed (the latest of that name)

    def host(self, name, address=None, wait_for_rpc=False, config=None):
        """Starts host `name` (letters, digits, '_', '-', '.') and returns its strata.World.

        address: its address on the cluster's network (world.address); default: the address
            this name had before (a restarted host keeps it), else the next free 10.0.0.N.
        wait_for_rpc and config as for strata.World. ValueError when an open host of this
        cluster already has that name or address; a closed host's name and address may be
        taken again (a restart: same name, same identifiers)."""
        from .world import World
        if not isinstance(name, str):
            raise TypeError("host name must be a str, got %r" % (name,))
        if address is not None and not isinstance(address, str):
            raise TypeError("address must be a str, got %r" % (address,))
        w = World(wait_for_rpc=wait_for_rpc, config=config, _cluster=self, _name=name,
                  _address=address)
        self._hosts[name] = w
        return w

    @property
    def network(self):
        """The cluster's simulated network (strata.cluster.Network): links and faults."""
        return Network(self)

    def __getitem__(self, name):
        """The open host named `name` (KeyError if none)."""
        w = self._hosts.get(name)
        if w is None or w.closed:
            raise KeyError("no open host named %r in this cluster" % (name,))
        return w

    @property
    def hosts(self):
        """The open hosts: {name: World}, sorted by name."""
        return {n: self._hosts[n] for n in self._host_names() if n in self._hosts}

    def run_until(self, predicate, timeout_ns=None, max_steps=None):
        """Runs every host until predicate() is true (checked after every step).

        Returns True when it held, False when the cluster went idle, `timeout_ns` of virtual
        time passed, or `max_steps` steps ran first. The predicate must not call into a host
        (no rpc, no bdev I/O): read state the hosts' callbacks set instead."""
        if not callable(predicate):
            raise TypeError("predicate must be callable")
        return self._run_until(predicate, timeout_ns, max_steps)

    def close(self):
        """Closes every open host (in reverse order of creation); idempotent."""
        errors = []
        for w in reversed(list(self._hosts.values())):
            try:
                w.close()
            except Exception as e:  # close the others anyway
                errors.append("%s: %s" % (w.name, e))
        if errors:
            raise RuntimeError("closing the cluster: " + "; ".join(errors))

    def __repr__(self):
        return "Cluster(seed=%d, hosts=%r, now=%dns, steps=%d)" % (
            self.seed, list(self._host_names()), self.now(), self.steps)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _ns(seconds):
    if seconds is None:
        return None
    if seconds < 0:
        raise ValueError("a duration must not be negative, got %r" % (seconds,))
    return int(round(seconds * 1e9))


class Network:
    """The simulated network of a Cluster (core/sock sim.h).

    Every host is attached under its address (world.address). Bytes travel as a stream per
    direction, cut into segments at seeded boundaries, each delivered after the link's latency
    and its serialisation at the link's bandwidth, in order and exactly once. Same seed, same
    bytes at the same virtual times: every delivery is in the cluster's trace hash.

    Endpoints `a` and `b` below are addresses ("10.0.0.2") or host names of this cluster
    ("target"), in either order; a fault applies to both directions between them. Durations
    are in seconds of virtual time (floats welcome). Faults take effect for what is sent or
    delivered from now on.
    """

    def __init__(self, cluster):
        self._c = cluster

    def _addr(self, x):
        from .world import World
        if isinstance(x, World):
            return x.address
        if not isinstance(x, str):
            raise TypeError("an endpoint is an address, a host name or a World, got %r" % (x,))
        h = self._c._hosts.get(x)
        return h.address if h is not None and h.address else x

    def info(self):
        """Counters (segments, bytes, connects, refused, resets), the default link, the
        delivery hash, and {host name: address}."""
        return self._c._net_info()

    def addresses(self):
        """{host name: address} of every host that ever joined (a closed host's too)."""
        return dict(self.info()["addresses"])

    def set_link(self, a=None, b=None, latency_us=None, bandwidth=None, max_segment_bytes=None):
        """Sets the link between a and b (both ways), or with neither the default link of every
        pair without its own. latency_us: one-way latency in microseconds; bandwidth: bytes
        per second (0: unlimited); max_segment_bytes: segments are 1..max bytes, the
        boundaries seeded. Parameters left None keep their value."""
        self._c._net_set_link(None if a is None else self._addr(a),
                              None if b is None else self._addr(b),
                              None if latency_us is None else int(round(latency_us * 1000)),
                              bandwidth, max_segment_bytes)

    def link(self, a=None, b=None):
        """{latency_ns, bytes_per_sec, max_segment_bytes} of a link (default link without a, b)."""
        return self._c._net_link(None if a is None else self._addr(a),
                                 None if b is None else self._addr(b))

    def delay(self, a, b, extra_us, seconds):
        """Adds extra_us of one-way latency to segments sent between a and b during the next
        `seconds` (in order: later bytes never overtake earlier ones)."""
        self._c._net_delay(self._addr(a), self._addr(b), int(round(extra_us * 1000)),
                           _ns(seconds))

    def stall(self, a, b, seconds):
        """Delivers nothing between a and b for `seconds`; then everything queued flows, in
        order (a stalled switch port)."""
        self._c._net_stall(self._addr(a), self._addr(b), _ns(seconds))

    def partition(self, a, b, mode="timeout"):
        """Cuts a from b until heal(): nothing is delivered (bytes wait, connections stay up);
        new connects time out after connect_timeout (mode "timeout") or are refused ("refuse")."""
        self._c._net_partition(self._addr(a), self._addr(b), mode)

    def heal(self, a, b):
        """Lifts a partition: queued bytes flow again, in order, exactly once."""
        self._c._net_heal(self._addr(a), self._addr(b))

    def reset(self, a=None, b=None, connection_id=None):
        """Resets every connection between a and b, or one by id (connections()): both ends see
        "connection reset"; bytes in flight are dropped. Returns how many were reset."""
        if connection_id is not None:
            if a is not None or b is not None:
                raise ValueError("give a connection_id or two endpoints, not both")
            self._c._net_reset_connection(connection_id)
            return 1
        if a is None or b is None:
            raise ValueError("give both endpoints (or a connection_id)")
        return self._c._net_reset(self._addr(a), self._addr(b))

    def slow_reader(self, address, bandwidth):
        """Bytes reach `address` (a host) at most at `bandwidth` bytes per second, from every
        peer together; 0 lifts it."""
        self._c._net_slow_reader(self._addr(address), bandwidth)

    def connections(self):
        """Every connection: {id, client: {address, port}, server, bytes_to_server,
        bytes_to_client, queued_to_server, queued_to_client, state}; state is "connecting",
        "established", "closing", "closed", "reset" or "failed"."""
        return self._c._net_connections()

    @property
    def connect_timeout(self):
        """Seconds before a connect across a partition (mode "timeout") fails."""
        return self._c._net_connect_timeout_ns / 1e9

    @connect_timeout.setter
    def connect_timeout(self, seconds):
        self._c._net_connect_timeout_ns = _ns(seconds)
