"""NVMe-oF over the simulated network: a target on one host of a strata.Cluster, the NVMe/TCP
initiator on another, set up with SPDK's RPC names and parameters (what scripts/rpc.py sends).

    with strata.Cluster(seed) as c:
        tgt, ini = c.host("target"), c.host("initiator")
        tgt.rpc("bdev_malloc_create", name="Malloc0", num_blocks=8192, block_size=512)
        t = nvmf.Target(tgt, ["Malloc0"])                  # transport, subsystem, ns, listener
        bdevs = nvmf.attach(ini, t, name="Nvme0")          # ["Nvme0n1"] on the initiator
        ini.bdev("Nvme0n1").write(0, data)

The target (core/nvmf) and the initiator's TCP transport (core/nvme, bdev_nvme) come from
issue 14's other parts; missing(world) says which of them a build lacks, so scenarios can skip
with the reason instead of failing on a method that does not exist yet.
"""

from .errors import RpcError

DEFAULT_NQN = "nqn.2016-06.io.spdk:cnode1"
DEFAULT_PORT = 4420

TARGET_METHODS = ("nvmf_create_transport", "nvmf_create_subsystem", "nvmf_subsystem_add_ns",
                  "nvmf_subsystem_add_listener", "nvmf_subsystem_remove_ns",
                  "nvmf_subsystem_get_controllers", "nvmf_get_subsystems")


def missing(world, target=True, initiator=True):
    """What this build lacks for NVMe-oF/TCP scenarios: a list of reasons (empty: nothing).

    target: checks the target's RPC methods (core/nvmf). initiator: checks that
    bdev_nvme_attach_controller takes trtype TCP (asked with an address nothing listens on: a
    build without the transport refuses the trtype itself)."""
    methods = set(world.rpc("rpc_get_methods"))
    reasons = []
    absent = [m for m in TARGET_METHODS if m not in methods]
    if target and absent:
        reasons.append("the NVMe-oF target (core/nvmf): no " + ", ".join(absent))
    if not initiator:
        return reasons
    if "bdev_nvme_attach_controller" not in methods:
        reasons.append("no bdev_nvme_attach_controller")
        return reasons
    try:
        world.rpc("bdev_nvme_attach_controller", name="_probe", trtype="TCP", adrfam="IPv4",
                  traddr="192.0.2.1", trsvcid="1", subnqn=DEFAULT_NQN, ctrlr_loss_timeout_sec=0)
    except RpcError as e:
        text = str(e).lower()
        if "trtype" in text and "not supported" in text:
            reasons.append("the NVMe/TCP initiator: %s" % e)
    else:  # pragma: no cover - something answered at a documentation address
        world.rpc("bdev_nvme_detach_controller", name="_probe")
    return reasons


def listen_address(address, port=DEFAULT_PORT):
    return {"trtype": "TCP", "adrfam": "IPv4", "traddr": address, "trsvcid": str(port)}


class Target:
    """An NVMe-oF/TCP target on `world`: the TCP transport, subsystem `nqn` with one namespace
    per bdev (nsid 1, 2, ...), listening at world.address:port (127.0.0.1 outside a cluster).

    transport: extra nvmf_create_transport parameters (e.g. {"in_capsule_data_size": 4096}).
    """

    def __init__(self, world, bdevs, nqn=DEFAULT_NQN, port=DEFAULT_PORT, allow_any_host=True,
                 serial_number="STRATA00000000000001", transport=None, create_transport=True):
        self.world, self.nqn, self.port = world, nqn, port
        self.address = world.address or "127.0.0.1"
        if create_transport:
            world.rpc("nvmf_create_transport", trtype="TCP", **(transport or {}))
        world.rpc("nvmf_create_subsystem", nqn=nqn, allow_any_host=allow_any_host,
                  serial_number=serial_number)
        self.nsids = {}
        for bdev in bdevs:
            self.add_ns(bdev)
        world.rpc("nvmf_subsystem_add_listener", nqn=nqn,
                  listen_address=listen_address(self.address, port))

    def add_ns(self, bdev, nsid=None):
        """Adds bdev as a namespace (the next nsid by default); returns the nsid."""
        nsid = nsid or (max(self.nsids.values(), default=0) + 1)
        got = self.world.rpc("nvmf_subsystem_add_ns", nqn=self.nqn,
                             namespace={"bdev_name": bdev, "nsid": nsid})
        self.nsids[bdev] = got if isinstance(got, int) else nsid
        return self.nsids[bdev]

    def remove_ns(self, nsid):
        self.world.rpc("nvmf_subsystem_remove_ns", nqn=self.nqn, nsid=nsid)
        self.nsids = {b: n for b, n in self.nsids.items() if n != nsid}

    def controllers(self):
        return self.world.rpc("nvmf_subsystem_get_controllers", nqn=self.nqn)

    def qpairs(self):
        return self.world.rpc("nvmf_subsystem_get_qpairs", nqn=self.nqn)


def attach(world, target, name="Nvme0", **options):
    """Attaches `world`'s bdev_nvme to `target` (a Target, or (address, port, nqn)) over
    NVMe/TCP; returns the bdev names it created ("<name>n<nsid>"). options: SPDK's
    bdev_nvme_attach_controller parameters (hostnqn, ctrlr_loss_timeout_sec,
    reconnect_delay_sec, keep_alive_timeout_ms, hdgst, ddgst, ...)."""
    if isinstance(target, Target):
        address, port, nqn = target.address, target.port, target.nqn
    else:
        address, port, nqn = target
    return world.rpc("bdev_nvme_attach_controller", name=name, trtype="TCP", adrfam="IPv4",
                     traddr=address, trsvcid=str(port), subnqn=nqn, **options)
