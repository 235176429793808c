"""Several simulated hosts in one seeded run: strata.Cluster.

A Cluster is one SimScheduler (one seed, one virtual clock, one trace hash) and one simulated
network; each host is a strata.World with its own Host: bdevs, lvol stores, emulated devices
and identifiers. These scenarios check that the hosts stay independent, that the whole cluster
replays from its seed, that one host may close (and restart) while the others run on, and that
bytes cross the sim network intact under each network fault."""

import pytest

import strata

MS = 1_000_000
S = 1_000_000_000


def make_bdevs(w, fill):
    w.rpc("bdev_malloc_create", name="Malloc0", num_blocks=4096, block_size=512)
    w.rpc("bdev_null_create", name="Null0", num_blocks=1024, block_size=512)
    w.rpc("bdev_lvol_create_lvstore", bdev_name="Malloc0", lvs_name="lvs", cluster_sz=1 << 20)
    w.rpc("bdev_lvol_create", lvs_name="lvs", lvol_name="vol", size_in_mib=1)
    w.bdev("Null0").write(0, bytes([fill]) * 512)
    w.rpc("bdev_malloc_create", name="Data", num_blocks=64, block_size=512)
    w.bdev("Data").write(0, bytes([fill]) * 512)


def key(b):
    # An lvol bdev's name is its (random) UUID: compare it by its alias.
    return b["aliases"][0] if b.get("aliases") else b["name"]


def test_two_hosts_have_independent_bdevs(seed):
    with strata.Cluster(seed=seed, reactors=2) as c:
        target, initiator = c.host("target"), c.host("initiator")
        assert sorted(c.hosts) == ["initiator", "target"]
        assert c["target"] is target
        make_bdevs(target, 0xA1)
        make_bdevs(initiator, 0xB2)
        assert target.bdev("Data").read(0, 1) == bytes([0xA1]) * 512
        assert initiator.bdev("Data").read(0, 1) == bytes([0xB2]) * 512
        # Same names on both, different identities: the UUIDs come from seed and host name.
        uuids = [{key(b): b["uuid"] for b in w.rpc("bdev_get_bdevs")}
                 for w in (target, initiator)]
        assert uuids[0].keys() == uuids[1].keys()
        assert not set(uuids[0].values()) & set(uuids[1].values())
        target.rpc("bdev_malloc_delete", name="Data")
        assert "Data" in [b["name"] for b in initiator.rpc("bdev_get_bdevs")]
        # One clock, one trace: every host reads the cluster's.
        assert target.now() == initiator.now() == c.now()
        assert target.trace_hash() == initiator.trace_hash() == c.trace_hash()
        # Threads are per host; the cluster lists them all.
        assert {t["host"] for t in target.threads()} == {"target"}
        # (and the network's own Thread, of its Host "simnet")
        assert {t["host"] for t in c.threads()} == {"target", "initiator", "simnet"}


def test_two_hosts_with_the_same_thread_names_and_device_addresses(seed):
    addr = "0000:01:00.0"
    with strata.Cluster(seed=seed, reactors=2) as c:
        hosts = [c.host("target"), c.host("initiator")]
        ctrls = []
        for i, w in enumerate(hosts):
            w.create_thread("worker")  # the name is per host
            # Each host's own emulated bus, devices Thread and driver, at the same address.
            w.add_nvme(addr, namespaces=[{"nsid": 1, "num_blocks": 2048, "block_size": 512}])
            ctrls.append(w.nvme_attach(addr))
            ctrls[i].write(1, 0, bytes([0x40 + i]) * 512)
        for w in hosts:
            w.post_marks(["worker"], 2)
        c.run_until_idle()
        for i, w in enumerate(hosts):
            assert [m[:2] for m in w.take_marks()] == [("worker", 0), ("worker", 1)]
            assert ctrls[i].read(1, 0, 1) == bytes([0x40 + i]) * 512
            assert [t["name"] for t in w.threads()].count("worker") == 1
        hosts[0].close()
        assert ctrls[1].read(1, 0, 1) == bytes([0x41]) * 512
        ctrls[1].detach()


def test_host_names_are_distinct_and_valid(seed):
    with strata.Cluster(seed=seed) as c:
        c.host("target")
        with pytest.raises(ValueError, match="already has a host named 'target'"):
            c.host("target")
        with pytest.raises(ValueError, match="not valid"):
            c.host("bad name")
        with pytest.raises(ValueError, match="address"):
            c.host("other", address=c["target"].address)
        with pytest.raises(KeyError):
            c["nope"]
        assert list(c.hosts) == ["target"]  # the refused ones left nothing behind


def cluster_run(seed):
    """A workload over two hosts and the network; returns what a replay must reproduce."""
    with strata.Cluster(seed=seed, reactors=2) as c:
        target, initiator = c.host("target"), c.host("initiator")
        make_bdevs(target, 1)
        make_bdevs(initiator, 2)
        for i in range(3):
            target.create_thread("tw%d" % i, reactor=i % 2)
            initiator.create_thread("iw%d" % i, reactor=(i + 1) % 2)
        target.post_marks(["tw0", "tw1", "tw2"], 3)
        initiator.post_marks(["iw0", "iw1", "iw2"], 3)
        c.run_until_idle()
        srv = target.sock_listen(4420, echo=True)
        conn = initiator.sock_connect("target", 4420)
        assert c.run_until(lambda: conn.state == "established", timeout_ns=S)
        payload = bytes(range(256)) * 200
        conn.send(payload)
        assert c.run_until(lambda: conn.info()["received"] >= len(payload), timeout_ns=10 * S)
        assert conn.recv() == payload
        assert len(srv.accepted()) == 1
        ids = {w.name: [b["uuid"] for b in w.rpc("bdev_get_bdevs")] for w in (target, initiator)}
        return (c.trace_hash(), c.event_hash(), c.now(), c.steps, ids,
                target.take_marks(), initiator.take_marks(), c.network.info()["delivery_hash"])


def test_same_seed_same_cluster_trace_different_seed_differs(seed):
    a = cluster_run(seed)
    b = cluster_run(seed)
    assert a == b, "the cluster did not replay from seed %d" % seed
    others = [cluster_run(seed + k) for k in (1, 2)]
    assert all(o[0] != a[0] for o in others), "another seed gave the same trace hash"
    assert all(o[4] != a[4] for o in others), "UUIDs must come from the seed"


def test_a_host_replays_alone_with_the_same_identifiers(seed):
    # A host's identifiers depend on the seed and its name only, not on the other hosts.
    with strata.Cluster(seed=seed) as c:
        make_bdevs(c.host("target"), 1)
        alone = [b["uuid"] for b in c["target"].rpc("bdev_get_bdevs")]
    with strata.Cluster(seed=seed) as c:
        make_bdevs(c.host("initiator"), 1)
        make_bdevs(c.host("target"), 1)
        crowded = [b["uuid"] for b in c["target"].rpc("bdev_get_bdevs")]
    assert alone == crowded


@pytest.mark.parametrize("first", ["target", "initiator"])
def test_closing_one_host_while_the_other_runs(seed, first):
    with strata.Cluster(seed=seed, reactors=2) as c:
        hosts = {n: c.host(n) for n in ("target", "initiator")}
        for i, w in enumerate(hosts.values()):
            make_bdevs(w, 0x10 + i)
        other = hosts["initiator" if first == "target" else "target"]
        fill = 0x10 if other.name == "target" else 0x11
        # The other host has a timer running (bdev_delay's poller) and I/O to do.
        other.rpc("bdev_delay_create", base_bdev_name="Data", name="Slow",
                  avg_read_latency=100, p99_read_latency=100, avg_write_latency=100,
                  p99_write_latency=100)
        saved = other.rpc("save_config")
        hosts[first].close()
        assert hosts[first].closed
        assert list(c.hosts) == [other.name]
        with pytest.raises(RuntimeError, match="closed"):
            hosts[first].rpc("bdev_get_bdevs")
        c.advance(50 * MS)
        assert other.bdev("Slow").read(0, 1) == bytes([fill]) * 512
        other.bdev("Slow").write(1, b"\x5a" * 512)
        assert other.bdev("Data").read(1, 1) == b"\x5a" * 512
        assert other.rpc("save_config") == saved
        assert {t["host"] for t in c.threads()} == {other.name, "simnet"}
        hosts[first].close()  # idempotent


def test_a_closed_host_restarts_under_its_name_and_address(seed):
    with strata.Cluster(seed=seed) as c:
        target = c.host("target", address="10.0.0.2")
        initiator = c.host("initiator")
        target.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
        first_uuid = target.rpc("bdev_get_bdevs")[0]["uuid"]
        target.sock_listen(4420)
        target.close()
        # Nothing listens at the address now: the connect fails.
        conn = initiator.sock_connect("10.0.0.2", 4420)
        assert c.run_until(lambda: conn.state not in ("connecting", "established"),
                           timeout_ns=2 * S)
        assert conn.state == "error"
        target = c.host("target")
        assert target.address == "10.0.0.2"  # the name keeps its address
        assert target.rpc("bdev_get_bdevs") == []  # a new App: nothing survived
        target.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
        assert target.rpc("bdev_get_bdevs")[0]["uuid"] == first_uuid  # same name, same stream
        srv = target.sock_listen(4420, echo=True)
        conn = initiator.sock_connect("target", 4420)
        assert c.run_until(lambda: conn.state == "established", timeout_ns=S)
        conn.send(b"again")
        assert c.run_until(lambda: conn.info()["received"] >= 5, timeout_ns=S)
        assert conn.recv() == b"again"
        assert len(srv.accepted()) == 1


def test_the_cluster_outlives_every_host_and_the_hosts_outlive_the_cluster_object(seed):
    c = strata.Cluster(seed=seed)
    w = c.host("solo")
    w.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
    del c  # the Python Cluster goes; the host still holds the simulator
    import gc
    gc.collect()
    assert w.bdev("M").read(0, 1) == bytes(512)
    w.advance(MS)
    w.close()


# --- the sim network -------------------------------------------------------------------------


def echo_pair(c):
    target, initiator = c.host("target"), c.host("initiator")
    srv = target.sock_listen(4420, echo=True)
    conn = initiator.sock_connect(target.address, 4420)
    assert c.run_until(lambda: conn.state == "established", timeout_ns=S)
    return target, initiator, srv, conn


def pattern(n, salt):
    return bytes((i * 7 + salt) & 0xFF for i in range(n))


def roundtrip(c, conn, data, timeout_ns=30 * S):
    before = conn.info()["received"]
    conn.send(data)
    ok = c.run_until(lambda: conn.info()["received"] >= before + len(data), timeout_ns=timeout_ns)
    got = conn.recv()
    assert ok, "only %d of %d bytes came back" % (len(got), len(data))
    assert got == data, "bytes changed on the way"


def test_network_link_latency_and_bandwidth(seed):
    with strata.Cluster(seed=seed) as c:
        target, initiator, srv, conn = echo_pair(c)
        c.network.set_link("target", "initiator", latency_us=500, bandwidth=10_000_000)
        assert c.network.link("initiator", "target") == {
            "latency_ns": 500_000, "bytes_per_sec": 10_000_000, "max_segment_bytes": 16384}
        t0 = c.now()
        roundtrip(c, conn, pattern(100_000, 1))
        # 100 kB at 10 MB/s is at least 10 ms each way (the echo overlaps the two directions).
        assert c.now() - t0 >= 10 * MS
        # The default link is untouched.
        assert c.network.link()["latency_ns"] == 20_000


@pytest.mark.parametrize("fault", ["delay", "stall", "partition", "slow_reader"])
def test_bytes_arrive_intact_and_in_order_under_each_fault(seed, fault):
    with strata.Cluster(seed=seed) as c:
        target, initiator, srv, conn = echo_pair(c)
        net = c.network
        data = pattern(300_000, seed & 0xFF)
        t0 = c.now()
        if fault == "delay":
            net.delay("target", "initiator", extra_us=2000, seconds=0.5)
        elif fault == "stall":
            net.stall("target", "initiator", seconds=0.05)
        elif fault == "partition":
            net.partition("target", "initiator")
        elif fault == "slow_reader":
            net.slow_reader("target", 1_000_000)
        conn.send(data)
        if fault == "partition":
            c.advance(100 * MS)
            assert conn.info()["received"] == 0, "bytes crossed a partition"
            assert net.connections()[0]["state"] == "established"
            net.heal("target", "initiator")
        ok = c.run_until(lambda: conn.info()["received"] >= len(data), timeout_ns=60 * S)
        got = conn.recv()
        assert ok and got == data
        elapsed = c.now() - t0
        floor = {"delay": 4 * MS, "stall": 50 * MS, "partition": 100 * MS,
                 "slow_reader": 250 * MS}[fault]
        assert elapsed >= floor, "%s: the fault did not slow the transfer (%d ns)" % (
            fault, elapsed)
        if fault == "slow_reader":
            net.slow_reader("target", 0)
        # After the fault, the connection still works.
        roundtrip(c, conn, b"after " + fault.encode())


def test_reset_and_partitioned_connects(seed):
    with strata.Cluster(seed=seed) as c:
        target, initiator, srv, conn = echo_pair(c)
        (accepted,) = srv.accepted()
        assert c.network.reset("target", "initiator") == 1
        assert c.run_until(lambda: conn.state == "error" and accepted.state == "error",
                           timeout_ns=S)
        assert "reset" in conn.error and "reset" in accepted.error
        assert c.network.connections()[0]["state"] == "reset"
        # One connection by id.
        conn2 = initiator.sock_connect("target", 4420)
        assert c.run_until(lambda: conn2.state == "established", timeout_ns=S)
        cid = [x for x in c.network.connections() if x["state"] == "established"][0]["id"]
        c.network.reset(connection_id=cid)
        assert c.run_until(lambda: conn2.state == "error", timeout_ns=S)
        # Across a partition a connect is refused, or times out after connect_timeout.
        c.network.partition("target", "initiator", mode="refuse")
        refused = initiator.sock_connect("target", 4420)
        assert c.run_until(lambda: refused.state == "error", timeout_ns=S)
        c.network.partition("target", "initiator")
        c.network.connect_timeout = 0.2
        t0 = c.now()
        timed_out = initiator.sock_connect("target", 4420)
        assert c.run_until(lambda: timed_out.state == "error", timeout_ns=5 * S)
        assert c.now() - t0 >= 200 * MS
        c.network.heal("target", "initiator")
        conn3 = initiator.sock_connect("target", 4420)
        assert c.run_until(lambda: conn3.state == "established", timeout_ns=S)
        roundtrip(c, conn3, b"healed")
        info = c.network.info()
        assert info["resets"] >= 2 and info["refused"] >= 2


def test_network_fault_arguments_are_checked(seed):
    with strata.Cluster(seed=seed) as c:
        c.host("target")
        net = c.network
        with pytest.raises(ValueError, match="mode"):
            net.partition("target", "10.9.9.9", mode="sometimes")
        with pytest.raises(ValueError, match="both"):
            net.set_link("target", latency_us=5)
        with pytest.raises(ValueError, match="both endpoints"):
            net.reset("target")
        with pytest.raises(ValueError):
            net.reset(connection_id=12345)
        with pytest.raises(ValueError, match="negative"):
            net.stall("target", "10.9.9.9", -1)
        with pytest.raises(TypeError):
            net.heal("target", 5)
