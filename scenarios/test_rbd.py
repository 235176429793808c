"""The rbd bdev against a real single-node Ceph cluster (ci/ceph: one monitor, one manager, one
BlueStore OSD on a file, cephx, loopback), on the real scheduler: strata-tgt driven over JSON-RPC,
and bdevperf. Data through bdevperf verify and through an lvol store that outlives its bdev; an OSD
killed and restarted under I/O (I/O stalls, then completes, nothing lost); an image resized from
the rbd CLI while open; wrong credentials, a missing pool and a missing image give clear errors.

The cluster: STRATA_CEPH_DIR when set (ci/test starts one for ctest and pytest), else one started
here for the module. Without Ceph's packages the module skips, unless STRATA_REQUIRE_CEPH=1 (set by
ci/test where they are installed), which makes a skip a failure.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from strata.errors import RpcError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CEPH = os.path.join(ROOT, "ci", "ceph")


class Ceph:
    def __init__(self, directory):
        self.dir = directory
        self.conf = os.path.join(directory, "ceph.conf")
        self.keyring = os.path.join(directory, "client.strata.keyring")
        with open(os.path.join(directory, "pool")) as f:
            self.pool = f.read().strip()

    def rbd(self, *args, check=True):
        cmd = ["rbd", "-c", self.conf, "--id", "strata", "--keyring", self.keyring, *args]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def cluster_params(self, name="ceph"):
        return {"name": name, "user_id": "strata", "config_file": self.conf,
                "key_file": self.keyring}

    def osd_pid(self):
        with open(os.path.join(self.dir, "run", "osd.0.pid")) as f:
            return int(f.read().strip())

    def start_osd(self):
        subprocess.run(["ceph-osd", "-c", self.conf, "-i", "0"], check=True, timeout=60)


def _skip_or_fail(why):
    if os.environ.get("STRATA_REQUIRE_CEPH", "") == "1":
        pytest.fail("STRATA_REQUIRE_CEPH=1 but " + why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def ceph():
    given = os.environ.get("STRATA_CEPH_DIR")
    if given:
        yield Ceph(given)
        return
    if shutil.which("ceph-mon") is None or shutil.which("ceph-osd") is None:
        _skip_or_fail("Ceph is not installed (bash ci/install-deps)")
    d = tempfile.mkdtemp(prefix="strata-ceph-", dir="/tmp")
    os.rmdir(d)
    out = subprocess.run(["bash", CEPH, "start", d], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        subprocess.run(["bash", CEPH, "stop", d], capture_output=True, timeout=120)
        pytest.fail("ci/ceph start failed:\n" + out.stdout + out.stderr, pytrace=False)
    try:
        yield Ceph(d)
    finally:
        subprocess.run(["bash", CEPH, "stop", d], capture_output=True, timeout=120)


@pytest.fixture
def image(ceph, request):
    """A fresh 64 MiB image, removed afterwards."""
    name = "py-%s-%d" % (request.node.name.replace("[", "-").replace("]", ""), os.getpid())
    ceph.rbd("create", "--size", "64M", "%s/%s" % (ceph.pool, name))
    yield name
    ceph.rbd("rm", "--no-progress", "%s/%s" % (ceph.pool, name), check=False)


def _config(ceph, image, block_size=4096, name="Ceph0"):
    return {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_rbd_register_cluster", "params": ceph.cluster_params()},
        {"method": "bdev_rbd_create", "params": {"name": name, "pool_name": ceph.pool,
                                                 "rbd_name": image, "block_size": block_size,
                                                 "cluster_name": "ceph"}}]}]}


def _bdevperf(ceph, image, tmp_path, seconds, qd=32, workload="verify"):
    cfg = tmp_path / "rbd.json"
    cfg.write_text(json.dumps(_config(ceph, image)))
    exe = shutil.which("bdevperf")
    assert exe, "bdevperf not on PATH (source ci/env.sh)"
    cmd = [exe, "-q", str(qd), "-o", "4096", "-w", workload, "-t", str(seconds), "-c", str(cfg),
           "-T", "Ceph0"]
    return cmd


def test_bdevperf_verify_on_rbd(ceph, image, tmp_path):
    cmd = _bdevperf(ceph, image, tmp_path, 3)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Total" in out.stdout, out.stdout


def test_osd_killed_and_restarted_under_io(ceph, image, tmp_path):
    """The OSD goes away (TERM) under a verify run and comes back 3 s later: I/O stalls while it
    replays its log, then every I/O completes and verifies; bdevperf exits 0."""
    cmd = _bdevperf(ceph, image, tmp_path, 12, qd=16)
    perf = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        pid = ceph.osd_pid()
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        time.sleep(3)
        ceph.start_osd()
        out, err = perf.communicate(timeout=240)
    finally:
        if perf.poll() is None:
            perf.kill()
            perf.communicate()
    assert perf.returncode == 0, out + err
    assert "Total" in out, out


def test_lvol_store_on_rbd_outlives_the_bdev(ceph, image, strata_tgt):
    d = strata_tgt(config=_config(ceph, image))
    c = d.client
    lvs = c.call("bdev_lvol_create_lvstore", bdev_name="Ceph0", lvs_name="lvs_rbd",
                 cluster_sz=1 << 20)
    lvol = c.call("bdev_lvol_create", lvol_name="lv0", size_in_mib=8, lvs_name="lvs_rbd")
    assert c.call("bdev_get_bdevs", name=lvol)[0]["num_blocks"] == (8 << 20) // 4096
    # The store is on the image: delete the rbd bdev, create it again, and examine finds the
    # store and its lvol.
    assert c.call("bdev_rbd_delete", name="Ceph0") is True
    assert all(b["name"] != lvol for b in c.call("bdev_get_bdevs"))
    c.call("bdev_rbd_create", name="Ceph0", pool_name=ceph.pool, rbd_name=image, block_size=4096,
           cluster_name="ceph")
    c.call("bdev_wait_for_examine")
    stores = c.call("bdev_lvol_get_lvstores")
    assert [s["uuid"] for s in stores] == [lvs], stores
    assert c.call("bdev_get_bdevs", name="lvs_rbd/lv0")[0]["num_blocks"] == (8 << 20) // 4096


def test_lvol_data_on_rbd_round_trip(ceph, image, world):
    """Typed I/O through an lvol on RBD from the Python World: bytes written before the rbd bdev
    is deleted read back after it is created again."""
    world.rpc("bdev_rbd_register_cluster", **ceph.cluster_params())
    world.rpc("bdev_rbd_create", name="Ceph0", pool_name=ceph.pool, rbd_name=image,
              block_size=4096, cluster_name="ceph")
    world.rpc("bdev_lvol_create_lvstore", bdev_name="Ceph0", lvs_name="lvs_py",
              cluster_sz=1 << 20)
    world.rpc("bdev_lvol_create", lvol_name="lv", size_in_mib=4, lvs_name="lvs_py")
    data = bytes((i * 7) & 0xFF for i in range(4096 * 4))
    lv = world.bdev("lvs_py/lv")
    lv.write(3, data)
    lv.flush()
    world.rpc("bdev_rbd_delete", name="Ceph0")
    world.rpc("bdev_rbd_create", name="Ceph0", pool_name=ceph.pool, rbd_name=image,
              block_size=4096, cluster_name="ceph")
    world.rpc("bdev_wait_for_examine")
    assert world.bdev("lvs_py/lv").read(3, 4) == data
    world.rpc("bdev_rbd_delete", name="Ceph0")
    world.rpc("bdev_rbd_unregister_cluster", name="ceph")


def test_image_resized_from_the_rbd_cli_while_open(ceph, image, strata_tgt):
    d = strata_tgt(config=_config(ceph, image))
    c = d.client
    assert c.call("bdev_get_bdevs", name="Ceph0")[0]["num_blocks"] == (64 << 20) // 4096
    ceph.rbd("resize", "--no-progress", "--size", "96M", "%s/%s" % (ceph.pool, image))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if c.call("bdev_get_bdevs", name="Ceph0")[0]["num_blocks"] == (96 << 20) // 4096:
            break
        time.sleep(0.2)
    info = c.call("bdev_get_bdevs", name="Ceph0")[0]
    assert info["num_blocks"] == (96 << 20) // 4096, info
    assert info["driver_specific"]["rbd"]["size_bytes"] == 96 << 20
    # And through the RPC (MiB), which never shrinks.
    assert c.call("bdev_rbd_resize", name="Ceph0", new_size=128) is True
    assert c.call("bdev_get_bdevs", name="Ceph0")[0]["num_blocks"] == (128 << 20) // 4096
    with pytest.raises(RpcError, match="images only grow"):
        c.call("bdev_rbd_resize", name="Ceph0", new_size=64)


def test_wrong_credentials_missing_pool_and_image(ceph, image, daemon, tmp_path):
    c = daemon.client
    stranger = tmp_path / "stranger.keyring"
    stranger.write_text("[client.strata]\n\tkey = AQAvwhZrws9xEBAA3rOPtmP9nXp+lyYgGtRH6w==\n")
    params = ceph.cluster_params("bad")
    params["key_file"] = str(stranger)
    with pytest.raises(RpcError, match="refused client.strata"):
        c.call("bdev_rbd_register_cluster", **params)
    with pytest.raises(RpcError, match="key_file /nonexistent"):
        c.call("bdev_rbd_register_cluster", **dict(params, key_file="/nonexistent"))
    c.call("bdev_rbd_register_cluster", **ceph.cluster_params())
    with pytest.raises(RpcError, match="pool nosuchpool does not exist"):
        c.call("bdev_rbd_create", pool_name="nosuchpool", rbd_name=image, block_size=512,
               cluster_name="ceph")
    with pytest.raises(RpcError, match="no image nosuchimage in pool"):
        c.call("bdev_rbd_create", pool_name=ceph.pool, rbd_name="nosuchimage", block_size=512,
               cluster_name="ceph")
    # A private connection (user_id + config, no cluster_name) works too, and shows its config.
    name = c.call("bdev_rbd_create", user_id="strata", pool_name=ceph.pool, rbd_name=image,
                  block_size=512, config={"keyring": ceph.keyring,
                                          "mon_host": _mon_host(ceph)})
    info = c.call("bdev_get_bdevs", name=name)[0]["driver_specific"]["rbd"]
    assert info["user_id"] == "strata" and info["config"]["keyring"] == ceph.keyring
    assert c.call("bdev_rbd_get_clusters_info") == [
        {"cluster_name": "ceph", "user_id": "strata", "config_file": ceph.conf,
         "key_file": ceph.keyring}]


def _mon_host(ceph):
    with open(ceph.conf) as f:
        for line in f:
            if line.startswith("mon_host"):
                return line.split("=", 1)[1].strip()
    raise AssertionError("no mon_host in " + ceph.conf)


def test_replay_rpc_py_requests(ceph, image, daemon):
    """The exact requests SPDK v24.09's rpc.py sends for the rbd command lines of
    data/spdk/rpc_py_v24.09_rbd.cmds (captured with capture_rpc_py.py), with the cluster's paths
    put in for the placeholders, succeed against strata-tgt with SPDK's result shapes."""
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "spdk",
                        "rpc_py_v24.09_rbd.json")
    subst = {"CEPH_CONF": ceph.conf, "KEY_FILE": ceph.keyring, "POOL": ceph.pool,
             "IMAGE": image, "MON_HOST": _mon_host(ceph)}

    def fill(v):
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return subst.get(v, v) if isinstance(v, str) else v

    with open(data) as f:
        requests = json.load(f)
    shapes = {
        "bdev_rbd_register_cluster": lambda r: isinstance(r, str) and r,
        "bdev_rbd_get_clusters_info": lambda r: (isinstance(r, list) and r and "cluster_name" in r[0])
        or (isinstance(r, dict) and r.get("cluster_name") == "rbd_cluster"),
        "bdev_rbd_create": lambda r: isinstance(r, str) and r,
        "bdev_rbd_resize": lambda r: r is True,
        "bdev_rbd_delete": lambda r: r is True,
        "bdev_rbd_unregister_cluster": lambda r: r is True,
    }
    for e in requests:
        r = daemon.client.call_raw(e["method"], fill(e["params"]))
        assert shapes[e["method"]](r), "%s -> %r" % (e["cli"], r)
