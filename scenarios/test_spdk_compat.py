"""SPDK users carry over unchanged (issue 17): the exact requests SPDK's scripts/rpc.py (v24.09)
sends, replayed against Strata, with the reply's shape checked against SPDK's; SPDK-style saved
configs load; Strata's saved config names only methods SPDK knows.

data/spdk/rpc_py_v24.09.json was captured from SPDK's own rpc.py (capture_rpc_py.py beside it)
for the command lines in rpc_py_v24.09.cmds: every argument that is not None is sent, store_true
flags as false, so this is what an unmodified SPDK script sends. Later methods (nvmf_*, iscsi_*,
vhost_*) add their command lines there and their shapes to SHAPES below.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

import strata
from strata import RpcError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "spdk")
ADDR = "0000:01:00.0"


def load_replay():
    with open(os.path.join(DATA, "rpc_py_v24.09.json")) as f:
        return json.load(f)


def spdk_methods():
    with open(os.path.join(DATA, "methods_v24.09.txt")) as f:
        return {l.strip() for l in f if l.strip() and not l.startswith("#")}


# ---- result shapes, as SPDK writes them (lib/*/..._rpc.c, module/*/..._rpc.c) --------------

def is_true(r):
    assert r is True, r


def is_str(r):
    assert isinstance(r, str) and r, r


def is_list(r):
    assert isinstance(r, list), r


def keys(*names):
    def check(r):
        assert isinstance(r, dict), r
        missing = [n for n in names if n not in r]
        assert not missing, "missing %s in %s" % (missing, sorted(r))
    return check


def list_of(*names):
    def check(r):
        assert isinstance(r, list), r
        for e in r:
            keys(*names)(e)
    return check


BDEV_KEYS = ("name", "aliases", "product_name", "block_size", "num_blocks",
             "preferred_write_alignment", "preferred_write_granularity", "optimal_write_size",
             "preferred_unmap_alignment", "preferred_unmap_granularity", "uuid",
             "assigned_rate_limits", "claimed", "zoned", "supported_io_types", "driver_specific")


def bdevs(r):
    list_of(*BDEV_KEYS)(r)
    for b in r:
        keys("rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec",
             "w_mbytes_per_sec")(b["assigned_rate_limits"])
        # SPDK writes claim_type only for a claimed bdev.
        assert ("claim_type" in b) == b["claimed"], b


def iostat(r):
    keys("tick_rate", "ticks")(r)
    if "channels" in r:
        assert isinstance(r["name"], str)
        list_of("thread_id", "bytes_read", "num_read_ops")(r["channels"])
    else:
        list_of("name", "bytes_read", "num_read_ops", "bytes_written", "num_write_ops",
                "read_latency_ticks", "write_latency_ticks")(r["bdevs"])


def assert_in(x, allowed):
    assert x in allowed, x


def strings(r):
    assert isinstance(r, list) and all(isinstance(x, str) for x in r), r


def version(r):
    keys("version", "fields")(r)
    keys("major", "minor", "patch", "suffix")(r["fields"])


def histogram(r):
    keys("histogram", "bucket_shift", "tsc_rate")(r)
    import base64
    raw = base64.b64decode(r["histogram"])
    # SPDK's layout: (64 - shift + 1) ranges of 2^shift uint64 buckets.
    assert len(raw) == (64 - r["bucket_shift"] + 1) * (1 << r["bucket_shift"]) * 8


def send_cmd_reply(r):
    """bdev_nvme_send_cmd: base64 (URL-safe) of the 16-byte completion, and the c2h data; the
    replayed commands (Identify Controller, a read) succeed."""
    import base64
    keys("cpl", "data")(r)
    cpl = base64.urlsafe_b64decode(r["cpl"])
    assert len(cpl) == 16, cpl
    assert (int.from_bytes(cpl[14:16], "little") >> 1) & 0x7ff == 0, "status %r" % cpl
    assert len(base64.urlsafe_b64decode(r["data"])) in (512, 4096)


SHAPES = {
    "spdk_get_version": version,
    "rpc_get_methods": strings,
    "framework_get_subsystems": list_of("subsystem", "depends_on"),
    "framework_get_config": is_list,
    "framework_get_reactors": keys("tick_rate", "reactors"),
    "framework_get_scheduler": keys("scheduler_name", "scheduler_period"),
    "framework_wait_init": is_true,
    "thread_get_stats": keys("tick_rate", "threads"),
    "thread_get_pollers": keys("tick_rate", "threads"),
    "thread_get_io_channels": lambda r: (keys("tick_rate", "threads")(r),
                                         list_of("name", "io_channels")(r["threads"])),
    "log_set_level": is_true, "log_set_print_level": is_true, "log_set_flag": is_true,
    "log_clear_flag": is_true, "log_enable_timestamps": is_true,
    "log_get_level": is_str, "log_get_print_level": is_str,
    "log_get_flags": lambda r: keys()(r),
    "iobuf_get_stats": is_list,
    "accel_get_opc_assignments": keys("copy", "fill", "crc32c"),
    "accel_get_module_info": list_of("module", "supported ops"),
    "accel_assign_opc": is_true,
    "accel_get_stats": keys("sequence_executed", "operations"),
    "bdev_malloc_create": is_str, "bdev_null_create": is_str, "bdev_null_resize": is_true,
    "bdev_get_bdevs": bdevs,
    "bdev_get_iostat": iostat,
    "bdev_reset_iostat": is_true,
    "bdev_set_qos_limit": is_true,
    "bdev_enable_histogram": is_true,
    "bdev_get_histogram": histogram,
    "bdev_set_qd_sampling_period": is_true,
    "bdev_wait_for_examine": is_true,
    "bdev_error_create": is_true, "bdev_error_inject_error": is_true,
    "bdev_split_create": strings,
    "bdev_passthru_create": is_str,
    "bdev_delay_create": is_str, "bdev_delay_update_latency": is_true,
    "bdev_raid_create": is_true, "bdev_raid_delete": is_true,
    "bdev_raid_get_bdevs": list_of("name", "raid_level", "state", "num_base_bdevs",
                                   "num_base_bdevs_discovered", "base_bdevs_list"),
    "bdev_raid_remove_base_bdev": is_true,
    "bdev_lvol_create_lvstore": is_str,
    "bdev_lvol_get_lvstores": list_of("uuid", "name", "base_bdev", "total_data_clusters",
                                      "free_clusters", "block_size", "cluster_size"),
    "bdev_lvol_create": is_str, "bdev_lvol_snapshot": is_str, "bdev_lvol_clone": is_str,
    "bdev_lvol_get_lvols": list_of("alias", "uuid", "name", "is_thin_provisioned",
                                   "is_snapshot", "is_clone", "is_esnap_clone",
                                   "is_degraded", "lvs"),
    "bdev_lvol_inflate": is_true, "bdev_lvol_decouple_parent": is_true,
    "bdev_lvol_set_read_only": is_true, "bdev_lvol_resize": is_true,
    "bdev_lvol_rename": is_true, "bdev_lvol_set_parent": is_true,
    "bdev_lvol_set_parent_bdev": is_true,
    "bdev_lvol_start_shallow_copy": keys("operation_id"),
    "bdev_lvol_check_shallow_copy": lambda r: (
        keys("state", "copied_clusters", "total_clusters")(r),
        assert_in(r["state"], ("in progress", "complete"))),
    "bdev_lvol_grow_lvstore": is_true, "bdev_lvol_rename_lvstore": is_true,
    "bdev_lvol_delete": is_true, "bdev_lvol_delete_lvstore": is_true,
    "bdev_nvme_set_hotplug": is_true,
    "bdev_nvme_attach_controller": strings,
    "bdev_nvme_get_controllers": list_of("name", "ctrlrs"),
    "bdev_nvme_get_controller_health_info": keys(
        "model_number", "serial_number", "firmware_revision", "traddr", "critical_warning",
        "temperature_celsius", "available_spare_percentage", "percentage_used",
        "data_units_read", "data_units_written", "host_read_commands",
        "host_write_commands", "power_cycles", "power_on_hours", "unsafe_shutdowns",
        "media_errors", "num_err_log_entries"),
    "bdev_nvme_get_io_paths": lambda r: (keys("poll_groups")(r),
                                         [list_of("io_paths")([g]) for g in r["poll_groups"]]),
    "bdev_nvme_reset_controller": is_true, "bdev_nvme_detach_controller": is_true,
    "bdev_nvme_disable_controller": is_true, "bdev_nvme_enable_controller": is_true,
    "bdev_nvme_add_error_injection": is_true, "bdev_nvme_remove_error_injection": is_true,
    "bdev_nvme_send_cmd": send_cmd_reply,
    "bdev_passthru_delete": is_true, "bdev_delay_delete": is_true,
    "bdev_error_delete": is_true, "bdev_split_delete": is_true, "bdev_null_delete": is_true,
    "bdev_malloc_delete": is_true,
    "bdev_virtio_scsi_get_devices": list_of("name", "virtio"),
}

# Methods of the replay Strata does not have yet (issue 17's list): they must fail with
# "method not found", so implementing one makes this test fail until its shape joins SHAPES.
NOT_YET = set()


def replay_world(world):
    world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 64 << 20, "block_size": 512}])
    results = []
    for i, e in enumerate(load_replay()):
        where = "#%d %r -> %s %s" % (i, e["cli"], e["method"], json.dumps(e["params"]))
        if e["method"] in NOT_YET:
            with pytest.raises(RpcError) as ei:
                world.rpc_raw(e["method"], e["params"])
            assert ei.value.code == strata.METHOD_NOT_FOUND, where
            continue
        try:
            r = world.rpc_raw(e["method"], e["params"])
        except RpcError as err:
            pytest.fail("%s failed: %s" % (where, err))
        check = SHAPES.get(e["method"])
        assert check is not None, "no shape for %s" % e["method"]
        try:
            check(r)
        except AssertionError as err:
            pytest.fail("%s: result shape differs from SPDK's: %s\nresult: %s" %
                        (where, err, json.dumps(r)[:2000]))
        results.append((e, r))
    return results


def test_replay_rpc_py_requests(world):
    """Every request an unmodified rpc.py sends for the documented examples succeeds, and the
    result has SPDK's shape."""
    results = replay_world(world)
    by_cli = {e["cli"]: r for e, r in results}
    # bdev_split_create with -s: SPDK clamps the count to what fits (32 MiB base, 1 MiB parts).
    assert len(by_cli["bdev_split_create Malloc4 100000 -s 1"]) == 32
    # bdev_null_resize grew the bdev to 128 MiB.
    # bdev_set_qos_limit: SPDK rounds 1500 IOPS up to 2000 (checked after the call).
    world.rpc("log_enable_timestamps", enabled=True)  # process-wide: leave it as found


def test_replay_covers_every_method_with_a_shape():
    methods = {e["method"] for e in load_replay()}
    assert methods - set(SHAPES) - NOT_YET == set()
    # Everything replayed is an SPDK method (the capture came from SPDK's rpc.py).
    assert methods <= spdk_methods()


def test_virtio_scsi_attach_request_from_rpc_py_is_understood(world, tmp_path):
    """rpc.py's request for `bdev_virtio_attach_controller -t user -a SOCK -d scsi --vq-count 2
    --vq-size 64 VirtioScsi0` (captured with capture_rpc_py.py): every parameter is accepted and
    dev_type scsi is served; with no back end at the socket the error names the socket."""
    sock = str(tmp_path / "vhost.0")
    with pytest.raises(RpcError) as ei:
        world.rpc_raw("bdev_virtio_attach_controller",
                      {"name": "VirtioScsi0", "trtype": "user", "traddr": sock,
                       "dev_type": "scsi", "vq_count": 2, "vq_size": 64})
    assert sock in ei.value.message, ei.value.message
    assert world.rpc_raw("bdev_virtio_scsi_get_devices", None) == []


def test_store_true_flags_sent_as_false_are_accepted(world):
    world.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512,
              md_interleave=False, dif_is_head_of_md=False, md_size=0, dif_type=0,
              dif_pi_format=0, physical_block_size=0)
    world.rpc("bdev_null_create", name="N", num_blocks=64, block_size=512,
              dif_is_head_of_md=False, md_size=0, dif_type=0)
    world.rpc("bdev_get_iostat", name="M", per_channel=False)


@pytest.mark.parametrize("method,params,feature", [
    ("bdev_malloc_create", {"md_size": 8}, "metadata"),
    ("bdev_malloc_create", {"md_interleave": True}, "metadata"),
    ("bdev_malloc_create", {"dif_type": 1}, "DIF"),
    ("bdev_malloc_create", {"dif_is_head_of_md": True}, "DIF"),
    ("bdev_null_create", {"md_size": 16}, "metadata"),
    ("bdev_null_create", {"dif_type": 3}, "DIF"),
])
def test_missing_feature_refused_naming_it(world, method, params, feature):
    p = {"name": "X", "num_blocks": 64, "block_size": 512}
    p.update(params)
    with pytest.raises(RpcError) as ei:
        world.rpc(method, **p)
    name = next(iter(params))
    assert name in ei.value.message and feature in ei.value.message, ei.value.message
    assert world.rpc("bdev_get_bdevs") == []


def test_nvme_attach_multipath_and_dif_refused(world):
    world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 1 << 20}])
    base = {"name": "Nvme0", "trtype": "PCIe", "traddr": ADDR}
    for extra, feature in (({"prchk_reftag": True}, "DIF"), ({"multipath": "failover"},
                                                              "multipath"),
                           ({"psk": "key0"}, "TLS")):
        with pytest.raises(RpcError) as ei:
            world.rpc("bdev_nvme_attach_controller", **base, **extra)
        assert feature in ei.value.message, ei.value.message
    assert world.rpc("bdev_nvme_attach_controller", **base, multipath="disable",
                     max_bdevs=32) == ["Nvme0n1"]


def test_shapes_fixed_by_issue_17(world):
    assert world.rpc("bdev_malloc_create", name="M0", num_blocks=2048, block_size=512) == "M0"
    assert world.rpc("bdev_error_create", base_name="M0") is True
    (m0,) = world.rpc("bdev_get_bdevs", name="M0")
    (ee,) = world.rpc("bdev_get_bdevs", name="EE_M0")
    assert m0["claimed"] and m0["claim_type"] == "exclusive_write"
    assert not ee["claimed"] and "claim_type" not in ee
    # raid levels are case-insensitive, as SPDK's strcasecmp.
    world.rpc("bdev_malloc_create", name="M1", num_blocks=2048, block_size=512)
    world.rpc("bdev_malloc_create", name="M2", num_blocks=2048, block_size=512)
    assert world.rpc("bdev_raid_create", name="R", raid_level="RAID0", strip_size_kb=4,
                     base_bdevs=["M1", "M2"]) is True
    assert world.rpc("bdev_raid_get_bdevs", category="all")[0]["raid_level"] == "raid0"
    # QoS: SPDK rounds an IOPS limit up to a multiple of 1000, caps nothing else here.
    world.rpc("bdev_set_qos_limit", name="M1", rw_ios_per_sec=1500)
    (m1,) = world.rpc("bdev_get_bdevs", name="M1")
    assert m1["assigned_rate_limits"]["rw_ios_per_sec"] == 2000
    world.rpc("bdev_set_qos_limit", name="M1", rw_ios_per_sec=999)
    (m1,) = world.rpc("bdev_get_bdevs", name="M1")
    assert m1["assigned_rate_limits"]["rw_ios_per_sec"] == 1000
    with pytest.raises(RpcError) as ei:
        world.rpc("bdev_set_qos_limit", name="M1")
    assert "No rate limits" in ei.value.message
    # bdev_null_resize: MiB, never smaller.
    world.rpc("bdev_null_create", name="N", num_blocks=2048, block_size=512)  # 1 MiB
    assert world.rpc("bdev_null_resize", name="N", new_size=3) is True
    assert world.rpc("bdev_get_bdevs", name="N")[0]["num_blocks"] == 3 * 2048
    with pytest.raises(RpcError):
        world.rpc("bdev_null_resize", name="N", new_size=2)


def test_iostat_reset_and_per_channel(world):
    world.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
    d = world.bdev("M")
    d.write(0, b"x" * 512)
    (s,) = world.rpc("bdev_get_iostat", name="M")["bdevs"]
    assert s["num_write_ops"] == 1
    per = world.rpc("bdev_get_iostat", name="M", per_channel=True)
    assert per["name"] == "M" and isinstance(per["channels"], list)
    with pytest.raises(RpcError):
        world.rpc("bdev_get_iostat", per_channel=True)  # SPDK: needs a name
    world.rpc("bdev_reset_iostat", name="M", mode="maxmin")
    (s,) = world.rpc("bdev_get_iostat", name="M")["bdevs"]
    assert s["num_write_ops"] == 1 and s["max_write_latency_ticks"] == 0
    world.rpc("bdev_reset_iostat")
    (s,) = world.rpc("bdev_get_iostat", name="M")["bdevs"]
    assert s["num_write_ops"] == 0


def test_histogram_in_spdk_encoding(world):
    import base64
    import struct
    world.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
    with pytest.raises(RpcError):
        world.rpc("bdev_get_histogram", name="M")  # not enabled
    world.rpc("bdev_reset_iostat", name="M")  # what examine read does not count below
    world.rpc("bdev_enable_histogram", name="M", enable=True)
    d = world.bdev("M")
    for i in range(5):
        d.write(i, b"y" * 512)
    h = world.rpc("bdev_get_histogram", name="M")
    raw = base64.b64decode(h["histogram"])
    counts = struct.unpack("<%dQ" % (len(raw) // 8), raw)
    (s,) = world.rpc("bdev_get_iostat", name="M")["bdevs"]
    assert s["num_write_ops"] == 5
    assert sum(counts) == sum(s["latency_histogram_log2_ns"]) >= 5
    # Each count sits in the SPDK bucket whose range holds its latency: decode as SPDK's
    # histogram.py does (bucket start) and compare with Strata's log2 buckets.
    shift = h["bucket_shift"]
    starts = []
    for idx, c in enumerate(counts):
        if c:
            rng, i = idx >> shift, idx & ((1 << shift) - 1)
            start = i if rng == 0 else ((1 << shift) | i) << (rng - 1)
            starts.append((start, c))
    for log2, c in enumerate(s["latency_histogram_log2_ns"]):
        if c:
            assert (1 << log2, c) in starts, (log2, c, starts)


def histogram_total(world, name):
    import base64
    import struct
    raw = base64.b64decode(world.rpc("bdev_get_histogram", name=name)["histogram"])
    return sum(struct.unpack("<%dQ" % (len(raw) // 8), raw))


def test_histogram_of_one_io_type(world):
    """bdev_enable_histogram's opc (SPDK's spdk_bdev_enable_histogram_opts.io_type): only that
    type is counted; enabling again starts from zero; save_config keeps the opc."""
    world.rpc("bdev_malloc_create", name="M", num_blocks=64, block_size=512)
    d = world.bdev("M")
    d.write(0, b"a" * 512)  # before: not counted
    assert world.rpc("bdev_enable_histogram", name="M", enable=True, opc="write") is True
    for i in range(3):
        d.write(i, b"w" * 512)
    for i in range(4):
        d.read(i, 1)
    assert histogram_total(world, "M") == 3
    entries = [e for e in world.rpc("framework_get_config", name="bdev")
               if e["method"] == "bdev_enable_histogram"]
    assert entries == [{"method": "bdev_enable_histogram",
                        "params": {"name": "M", "enable": True, "opc": "write"}}]
    world.rpc("bdev_enable_histogram", name="M", enable=True, opc="read")
    assert histogram_total(world, "M") == 0
    d.read(0, 1)
    d.write(0, b"w" * 512)
    assert histogram_total(world, "M") == 1
    world.rpc("bdev_enable_histogram", name="M", enable=True)  # every type
    d.read(0, 1)
    d.write(0, b"w" * 512)
    d.flush()
    assert histogram_total(world, "M") == 3
    with pytest.raises(RpcError, match="opc 'nvme_admin'"):
        world.rpc("bdev_enable_histogram", name="M", enable=True, opc="nvme_admin")
    world.rpc("bdev_enable_histogram", name="M", enable=False)
    with pytest.raises(RpcError, match="not enabled"):
        world.rpc("bdev_get_histogram", name="M")


def test_qd_sampling_measures_queue_depth(world):
    """bdev_set_qd_sampling_period samples the I/O outstanding (SPDK's qd poller): with 4 slow
    writes in flight every sample sees 4; io_time and weighted_io_time grow by the period (x
    depth) per such sample, and stop growing once the I/O is done."""
    import strata.bdev as sbdev
    world.rpc("bdev_malloc_create", name="M0", num_blocks=64, block_size=512)
    world.rpc("bdev_delay_create", base_bdev_name="M0", name="D0", avg_read_latency=20_000,
              p99_read_latency=20_000, avg_write_latency=20_000, p99_write_latency=20_000)
    world.rpc("bdev_wait_for_examine")  # examine's slow read of D0 is done
    (s,) = world.rpc("bdev_get_iostat", name="D0")["bdevs"]
    assert "queue_depth" not in s  # as SPDK: only while sampling
    assert world.rpc("bdev_set_qd_sampling_period", name="D0", period=1000) is True
    ios = [world.bdev("D0").submit_write(i, b"q" * 512) for i in range(4)]
    world.advance(10_000_000)  # 10 ms of the 20 ms writes
    (s,) = world.rpc("bdev_get_iostat", name="D0")["bdevs"]
    assert s["queue_depth_polling_period"] == 1000
    assert s["queue_depth"] == 4
    assert 5_000 <= s["io_time"] <= 11_000, s
    assert s["weighted_io_time"] == 4 * s["io_time"]
    assert sbdev.wait(world, ios, timeout_ns=100_000_000)
    world.advance(5_000_000)
    (s,) = world.rpc("bdev_get_iostat", name="D0")["bdevs"]
    assert s["queue_depth"] == 0
    busy = s["io_time"]
    world.advance(5_000_000)
    (s,) = world.rpc("bdev_get_iostat", name="D0")["bdevs"]
    assert s["io_time"] == busy and 15_000 <= busy <= 22_000, s
    cfg = world.rpc("framework_get_config", name="bdev")
    assert {"method": "bdev_set_qd_sampling_period", "params": {"name": "D0", "period": 1000}} in cfg
    world.rpc("bdev_set_qd_sampling_period", name="D0", period=0)
    (s,) = world.rpc("bdev_get_iostat", name="D0")["bdevs"]
    assert "queue_depth" not in s
    # Deleting a sampled bdev stops its sampler (its desc does not hold the delete up).
    world.rpc("bdev_set_qd_sampling_period", name="D0", period=500)
    assert world.rpc("bdev_delay_delete", name="D0") is True
    assert [b["name"] for b in world.rpc("bdev_get_bdevs")] == ["M0"]


def test_framework_get_config_and_kill_instance_params(world):
    cfg = world.rpc("framework_get_config", name="bdev")
    assert cfg[0]["method"] == "bdev_set_options"
    with pytest.raises(RpcError) as ei:
        world.rpc("framework_get_config", name="nope")
    assert ei.value.code == strata.INVALID_PARAMS
    with pytest.raises(RpcError) as ei:
        world.rpc("spdk_kill_instance", sig_name="SIGSEGV")
    assert ei.value.code == strata.INVALID_PARAMS


def test_spdk_kill_instance_stops_strata_tgt(daemon):
    assert daemon.rpc("spdk_kill_instance", sig_name="SIGTERM") is True
    assert daemon.wait(timeout=20) == 0


# ---- configs ------------------------------------------------------------------------------

def spdk_config():
    with open(os.path.join(DATA, "spdk_tgt_v24.09_config.json")) as f:
        return json.load(f)


def with_sim_nvme(cfg):
    """The SPDK config attaches a PCIe controller at ADDR: strata-tgt gets an emulated one."""
    cfg = json.loads(json.dumps(cfg))
    cfg["subsystems"].insert(0, {"subsystem": "sim", "config": [
        {"method": "sim_nvme_create",
         "params": {"traddr": ADDR,
                    "namespaces": [{"nsid": 1, "num_blocks": 8192, "block_size": 512}]}}]})
    return cfg


def test_spdk_saved_config_loads_into_strata_tgt(strata_tgt):
    """A config written the way SPDK v24.09's spdk_tgt save_config writes it (every subsystem
    spdk_tgt has, option setters first) loads; the bdevs it names exist."""
    d = strata_tgt(config=with_sim_nvme(spdk_config()))
    # The socket listens before the config has loaded: wait for the framework's init (startup
    # state refuses bdev_get_bdevs), then for the config's last bdev.
    d.rpc("framework_wait_init")
    import time
    deadline = time.monotonic() + 20
    while not any(b["name"] == "Raid0" for b in d.rpc("bdev_get_bdevs")):
        assert time.monotonic() < deadline, "config did not finish loading"
        time.sleep(0.05)
    d.rpc("bdev_wait_for_examine")
    names = {b["name"] for b in d.rpc("bdev_get_bdevs")}
    for n in ("Malloc0", "Malloc1", "Malloc2", "Null0", "Malloc1p0", "Malloc1p1", "Raid0",
              "Passthru0", "Delay0", "EE_Malloc2", "Nvme0n1"):
        assert n in names, (n, sorted(names))
    lvols = d.rpc("bdev_lvol_get_lvols")
    assert [l["alias"] for l in lvols] == ["lvs0/lvol0"]
    assert d.rpc("framework_get_scheduler")["scheduler_name"] == "static"
    iobuf = d.rpc("framework_get_config", name="iobuf")
    assert iobuf[0]["params"]["small_pool_count"] == 16383


def test_spdk_saved_config_loads_into_world(world):
    """In a World (already initialized) the startup-only setters are skipped with a warning,
    as SPDK's load_config skips them at run time; the rest applies."""
    world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 4 << 20}])
    world.rpc_raw("load_config", spdk_config())
    assert world.rpc("bdev_get_bdevs", name="Raid0")[0]["num_blocks"] > 0
    assert world.rpc("bdev_get_bdevs", name="Nvme0n1")[0]["num_blocks"] > 0


def test_spdk_subsystem_strata_lacks_with_entries_is_refused(world):
    cfg = {"subsystems": [{"subsystem": "nbd", "config": [
        {"method": "nbd_start_disk", "params": {"bdev_name": "M", "nbd_device": "/dev/nbd0"}}]}]}
    with pytest.raises(RpcError) as ei:
        world.rpc_raw("load_config", cfg)
    assert "nbd" in ei.value.message and "SPDK" in ei.value.message
    with pytest.raises(RpcError) as ei:
        world.rpc_raw("load_config", {"subsystems": [{"subsystem": "nbdd", "config": []}]})
    assert "unknown subsystem 'nbdd'" in ei.value.message


def test_strata_saved_config_names_only_spdk_methods(world):
    """Without sim devices, every entry of Strata's save_config is an SPDK method, so the file
    loads into SPDK's spdk_tgt (which skips subsystems it lacks, such as Strata's log)."""
    known = spdk_methods()
    world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 4 << 20}])
    world.rpc_raw("load_config", spdk_config())
    world.rpc("bdev_set_qos_limit", name="Malloc0", rw_ios_per_sec=3000)
    world.rpc("bdev_enable_histogram", name="Malloc0", enable=True)
    cfg = world.rpc("save_config")
    strata_only_subsystems = {"log", "sim", "lvol"}
    for s in cfg["subsystems"]:
        if s["subsystem"] in strata_only_subsystems:
            continue
        for e in s["config"]:
            assert e["method"] in known, (s["subsystem"], e)
    # And it loads back into a fresh World (with the same emulated controller).
    w2 = strata.World(seed=1)
    try:
        w2.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 4 << 20}])
        w2.rpc_raw("load_config", cfg)
        # Lvols live in their store's metadata, not in the config (as in SPDK): the store was
        # on a RAM bdev, so they are the only difference.
        lvols = {l["uuid"] for l in world.rpc("bdev_lvol_get_lvols")}
        assert lvols
        assert {b["name"] for b in w2.rpc("bdev_get_bdevs")} == \
            {b["name"] for b in world.rpc("bdev_get_bdevs")} - lvols
    finally:
        w2.close()


# ---- SPDK's own rpc.py against strata-tgt (skips without SPDK's python tree) ---------------

SPDK_PY = os.environ.get("STRATA_SPDK_PY_TREE", "/tmp/spdkpy")


@pytest.mark.skipif(not os.path.isfile(os.path.join(SPDK_PY, "scripts", "rpc.py")),
                    reason="SPDK's python tree not present (set STRATA_SPDK_PY_TREE; see "
                           "scenarios/data/spdk/capture_rpc_py.py)")
def test_spdk_rpc_py_script_against_strata_tgt(strata_tgt):
    d = strata_tgt()
    env = dict(os.environ, PYTHONPATH=os.path.join(SPDK_PY, "python"))
    script = """
bdev_malloc_create -b Malloc0 64 512
bdev_malloc_create -b Malloc1 64 512
bdev_null_create Null0 64 512
bdev_error_create Malloc1
bdev_split_create Null0 4
bdev_raid_create -n Raid0 -z 64 -r 0 -b "Null0p0 Null0p1"
bdev_lvol_create_lvstore Malloc0 lvs0
bdev_lvol_create lvol0 16 -l lvs0 -t
bdev_lvol_snapshot lvs0/lvol0 snap0
bdev_lvol_clone lvs0/snap0 clone0
bdev_get_bdevs
bdev_get_iostat
bdev_lvol_get_lvols
accel_get_opc_assignments
bdev_set_qos_limit Malloc1 --rw_ios_per_sec 1500
bdev_enable_histogram EE_Malloc1 -e
bdev_get_histogram EE_Malloc1
framework_get_scheduler
thread_get_io_channels
save_config
"""
    failed = []
    for line in script.strip().splitlines():
        import shlex
        r = subprocess.run([sys.executable, os.path.join(SPDK_PY, "scripts", "rpc.py"), "-s",
                            d.socket] + shlex.split(line), env=env, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            failed.append((line, r.stderr[-500:]))
    assert not failed, failed


def wait_for(world, cond, steps=200, slice_ns=1_000_000):
    """Runs the simulation in slices of virtual time until cond() (which may call RPCs)."""
    for _ in range(steps):
        if cond():
            return True
        world.run_until(lambda: False, timeout_ns=slice_ns)
    return cond()


def test_nvme_hotplug_attaches_and_detaches(world):
    """bdev_nvme_set_hotplug runs a real poller: a controller appearing on the bus is attached
    (SPDK's HotInNvme<n> name), one leaving it is detached; disabled, nothing happens."""
    def ctrlrs():
        return [c["name"] for c in world.rpc("bdev_nvme_get_controllers")]

    dev = world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 1 << 20}])
    world.run_until(lambda: False, timeout_ns=5_000_000)
    assert ctrlrs() == []  # hotplug is off by default
    assert world.rpc("bdev_nvme_set_hotplug", enable=True, period_us=1000) is True
    assert wait_for(world, lambda: ctrlrs() == ["HotInNvme0"])
    assert wait_for(world, lambda: any(b["name"] == "HotInNvme0n1"
                                       for b in world.rpc("bdev_get_bdevs")))
    cfg = world.rpc("framework_get_config", name="bdev")
    hp = [e for e in cfg if e["method"] == "bdev_nvme_set_hotplug"]
    assert hp and hp[0]["params"] == {"enable": True, "period_us": 1000}
    dev.surprise_remove()
    assert wait_for(world, lambda: ctrlrs() == [])
    assert world.rpc("bdev_nvme_set_hotplug", enable=False) is True
    world.add_nvme("0000:02:00.0", namespaces=[{"nsid": 1, "size": 1 << 20}])
    world.run_until(lambda: False, timeout_ns=20_000_000)
    assert ctrlrs() == []


def test_nvme_health_info_and_io_paths(world):
    world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 1 << 20}])
    world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="pcie", traddr=ADDR)
    h = world.rpc("bdev_nvme_get_controller_health_info", name="Nvme0")
    assert h["traddr"] == ADDR and h["available_spare_percentage"] <= 100
    assert isinstance(h["temperature_celsius"], int)
    with pytest.raises(RpcError):
        world.rpc("bdev_nvme_get_controller_health_info", name="Nope")
    paths = world.rpc("bdev_nvme_get_io_paths")["poll_groups"][0]["io_paths"]
    assert [p["bdev_name"] for p in paths] == ["Nvme0n1"]
    assert paths[0]["transport"] == {"trtype": "PCIe", "traddr": ADDR}
    assert paths[0]["connected"] and paths[0]["accessible"]
    assert world.rpc("bdev_nvme_get_io_paths", name="Other")["poll_groups"][0]["io_paths"] == []


def test_nvme_error_injection_and_send_cmd(world):
    """bdev_nvme_add_error_injection on the admin queue fails the next Get Log Page with the
    injected status (err_count 1), bdev_nvme_send_cmd writes and reads a block, and bad
    parameters are refused."""
    import base64
    import struct
    world.add_nvme(ADDR, namespaces=[{"nsid": 1, "size": 1 << 20, "block_size": 512}])
    world.rpc("bdev_nvme_attach_controller", name="Nvme0", trtype="pcie", traddr=ADDR)
    assert world.rpc("bdev_nvme_add_error_injection", name="Nvme0", cmd_type="admin", opc=2,
                     sct=0, sc=6) is True
    with pytest.raises(RpcError):
        world.rpc("bdev_nvme_get_controller_health_info", name="Nvme0")
    world.rpc("bdev_nvme_get_controller_health_info", name="Nvme0")  # err_count 1: used up
    assert world.rpc("bdev_nvme_remove_error_injection", name="Nvme0", cmd_type="admin",
                     opc=2) is True

    def cmd(opc, nsid=0, cdw10=0):
        c = bytearray(64)
        c[0] = opc
        c[4:8] = struct.pack("<I", nsid)
        c[40:44] = struct.pack("<I", cdw10)
        return base64.urlsafe_b64encode(bytes(c)).decode()

    block = bytes((i * 3 + 1) & 0xff for i in range(512))
    r = world.rpc("bdev_nvme_send_cmd", name="Nvme0", cmd_type="io", data_direction="h2c",
                  cmdbuf=cmd(1, 1, 5), data=base64.urlsafe_b64encode(block).decode())
    assert "data" not in r and len(base64.urlsafe_b64decode(r["cpl"])) == 16
    r = world.rpc("bdev_nvme_send_cmd", name="Nvme0", cmd_type="io", data_direction="c2h",
                  cmdbuf=cmd(2, 1, 5), data_len=512)
    assert base64.urlsafe_b64decode(r["data"]) == block
    bad = [dict(cmd_type="both"), dict(data_direction="up"), dict(cmdbuf="AAAA"),
           dict(metadata_len=8), dict(name="Nope")]
    for b in bad:
        p = dict(name="Nvme0", cmd_type="io", data_direction="c2h", cmdbuf=cmd(2, 1, 5),
                 data_len=512)
        p.update(b)
        with pytest.raises(RpcError):
            world.rpc("bdev_nvme_send_cmd", **p)
    with pytest.raises(RpcError):
        world.rpc("bdev_nvme_add_error_injection", name="Nvme0", cmd_type="both", opc=2)
    with pytest.raises(RpcError):
        world.rpc("bdev_nvme_add_error_injection", name="Nvme0", cmd_type="io", opc=256)
