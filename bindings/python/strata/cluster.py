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

    def host(self, name, wait_for_rpc=False, config=None):
        """Starts host `name` (letters, digits, '_', '-', '.') and returns its strata.World.

        wait_for_rpc and config as for strata.World. ValueError when an open host of this
        cluster already has that name; a closed host's name may be reused (a restart)."""
        from .world import World
        if not isinstance(name, str):
            raise TypeError("host name must be a str, got %r" % (name,))
        w = World(wait_for_rpc=wait_for_rpc, config=config, _cluster=self, _name=name)
        self._hosts[name] = w
        return w

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
