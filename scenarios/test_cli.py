"""strata-rpc end to end against a real strata-tgt."""

import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(REPO, "bindings", "python", "bin", "strata-rpc")


def cli(daemon, *args):
    return subprocess.run([CLI, "-s", daemon.socket, *args], capture_output=True, text=True,
                          timeout=60)


def test_method_call_prints_json(daemon):
    p = cli(daemon, "strata_get_version")
    assert p.returncode == 0, p.stderr
    assert "Strata" in json.loads(p.stdout)["version"]


def test_params_and_raw_call(daemon):
    p = cli(daemon, "log_set_level", "--level", "INFO")
    assert p.returncode == 0, p.stderr
    p = cli(daemon, "call", "log_get_level", "{}")
    assert p.returncode == 0 and json.loads(p.stdout).upper() == "INFO"
    p = cli(daemon, "save_subsystem_config", "--name", "log")
    assert p.returncode == 0 and json.loads(p.stdout)["subsystem"] == "log"


def test_help_lists_daemon_methods(daemon):
    p = cli(daemon, "--help")
    assert p.returncode == 0
    assert "from rpc_get_methods" in p.stdout
    for m in ("save_config", "framework_get_reactors", "thread_get_pollers"):
        assert "  %s\n" % m in p.stdout
    marked = [ln.split()[0] for ln in p.stdout.splitlines() if "not callable" in ln]
    # Startup-only methods (framework_start_init, accel_set_options, ...) are marked now that
    # the daemon is initialized; runtime methods are not.
    assert "framework_start_init" in marked and "accel_set_options" in marked
    assert not {"save_config", "bdev_get_bdevs", "log_set_level"} & set(marked)


def test_help_marks_methods_not_callable_yet(strata_tgt):
    d = strata_tgt(wait_for_rpc=True)
    p = cli(d, "--help")
    assert p.returncode == 0
    line = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("thread_get_stats")][0]
    assert "not callable in the current state" in line


@pytest.mark.parametrize("args,code,text", [
    (["no_such_method"], 4, "error -32601"),
    (["log_get_level", "--foo", "1"], 5, "unknown parameter 'foo'"),
    (["log_set_level", "--level", "7"], 5, "level"),
    (["call", "log_get_level", "[1"], 2, "not valid JSON"),
])
def test_error_exit_codes(daemon, args, code, text):
    p = cli(daemon, *args)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert text in p.stderr
    if code != 2:
        assert p.stderr.startswith("error -32")


def test_invalid_state_exit_code(strata_tgt):
    d = strata_tgt(wait_for_rpc=True)
    p = cli(d, "thread_get_stats")
    assert p.returncode == 1 and "error -1:" in p.stderr
    assert cli(d, "framework_start_init").returncode == 0


def test_method_help(daemon):
    p = cli(daemon, "save_config", "--help")
    assert p.returncode == 0 and "serves save_config (callable now)" in p.stdout
    assert "docs/user/rpc.md" in p.stdout
    p = cli(daemon, "no_such_method", "--help")
    assert p.returncode == 4 and "does not serve no_such_method" in p.stdout


# SPDK rpc.py's syntax (bindings/python/strata/spdk_cli.py). Each case: the command line as
# SPDK's docs write it, and the params SPDK v24.09's scripts/rpc.py computes from it (options
# not given are left out).
SPDK_SYNTAX = [
    ("bdev_malloc_create 64 512 -b Malloc0", {"name": "Malloc0", "num_blocks": 131072, "block_size": 512}),
    ("bdev_malloc_create -b M1 0.5 4096 -u 11111111-2222-3333-4444-555555555555",
     {"name": "M1", "num_blocks": 128, "block_size": 4096, "uuid": "11111111-2222-3333-4444-555555555555"}),
    ("bdev_null_create Null0 8 4096", {"name": "Null0", "num_blocks": 2048, "block_size": 4096}),
    ("bdev_get_bdevs -b Malloc0", {"name": "Malloc0"}),
    ("bdev_get_bdevs -b Malloc0 -t 100", {"name": "Malloc0", "timeout": 100}),
    ("bdev_get_iostat -b Malloc0 -c", {"name": "Malloc0", "per_channel": True}),
    ("bdev_lvol_create_lvstore Malloc0 lvs", {"bdev_name": "Malloc0", "lvs_name": "lvs"}),
    ("bdev_lvol_create_lvstore Malloc0 lvs -c 1048576 --clear-method none",
     {"bdev_name": "Malloc0", "lvs_name": "lvs", "cluster_sz": 1048576, "clear_method": "none"}),
    ("bdev_lvol_create -l lvs lvol0 32", {"lvs_name": "lvs", "lvol_name": "lvol0", "size_in_mib": 32}),
    ("bdev_lvol_create lvol1 16 -t -u abc", {"uuid": "abc", "thin_provision": True, "lvol_name": "lvol1",
                                             "size_in_mib": 16}),
    ("bdev_lvol_snapshot lvs/lvol0 snap0", {"lvol_name": "lvs/lvol0", "snapshot_name": "snap0"}),
    ("bdev_lvol_clone lvs/snap0 clone0", {"snapshot_name": "lvs/snap0", "clone_name": "clone0"}),
    ("bdev_lvol_resize lvs/lvol0 48", {"name": "lvs/lvol0", "size_in_mib": 48}),
    ("bdev_lvol_get_lvstores -l lvs", {"lvs_name": "lvs"}),
    ("bdev_lvol_get_lvols -l lvs", {"lvs_name": "lvs"}),
    ("bdev_lvol_delete lvs/clone0", {"name": "lvs/clone0"}),
    ("bdev_lvol_set_parent lvs/lvol1 lvs/snap0", {"lvol_name": "lvs/lvol1", "parent_name": "lvs/snap0"}),
    ("bdev_lvol_set_parent_bdev lvs/lvol1 Malloc3", {"lvol_name": "lvs/lvol1", "parent_name": "Malloc3"}),
    ("bdev_lvol_start_shallow_copy lvs/snap0 Malloc3",
     {"src_lvol_name": "lvs/snap0", "dst_bdev_name": "Malloc3"}),
    ("bdev_lvol_check_shallow_copy 1", {"operation_id": 1}),
    ("bdev_lvol_delete_lvstore -l lvs", {"lvs_name": "lvs"}),
    ("bdev_split_create Null0 2", {"base_bdev": "Null0", "split_count": 2}),
    ("bdev_split_create Null0 4 -s 1", {"base_bdev": "Null0", "split_count": 4, "split_size_mb": 1}),
    ("bdev_passthru_create -b Malloc0 -p PT0", {"base_bdev_name": "Malloc0", "name": "PT0"}),
    ("bdev_raid_create -n Raid0 -z 64 -r raid0 -b 'Malloc1 Malloc2'",
     {"name": "Raid0", "strip_size_kb": 64, "raid_level": "raid0", "base_bdevs": ["Malloc1", "Malloc2"]}),
    ("bdev_aio_create /tmp/file AIO0 4096", {"filename": "/tmp/file", "name": "AIO0", "block_size": 4096}),
    ("bdev_malloc_delete Malloc0", {"name": "Malloc0"}),
]


@pytest.mark.parametrize("line,params", SPDK_SYNTAX, ids=[c[0].split()[0] + ":" + str(i)
                                                            for i, c in enumerate(SPDK_SYNTAX)])
def test_spdk_syntax_params(line, params):
    import shlex
    import sys
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
    from strata import spdk_cli
    words = shlex.split(line)
    assert spdk_cli.parse(words[0], words[1:]) == (words[0], params)


def test_spdk_syntax_bad_arguments():
    p = subprocess.run([CLI, "-s", "/nonexistent.sock", "bdev_malloc_create", "-b", "M0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "required: total_size, block_size" in p.stderr, p.stderr
    p = subprocess.run([CLI, "-s", "/nonexistent.sock", "bdev_malloc_create", "64", "x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "invalid int value" in p.stderr, p.stderr


def test_spdk_documented_sequence(daemon):
    """SPDK's documented lvol walk-through, typed as SPDK's docs write it."""
    def ok(line):
        import shlex
        p = cli(daemon, *shlex.split(line))
        assert p.returncode == 0, (line, p.stdout, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else None

    assert ok("bdev_malloc_create 64 512 -b Malloc0") == "Malloc0"
    ok("bdev_lvol_create_lvstore Malloc0 lvs")
    ok("bdev_lvol_create -l lvs lvol0 32")
    (b,) = ok("bdev_get_bdevs -b lvs/lvol0")
    assert b["block_size"] * b["num_blocks"] == 32 << 20
    (store,) = ok("bdev_lvol_get_lvstores -l lvs")
    assert store["name"] == "lvs" and store["base_bdev"] == "Malloc0"
    ok("bdev_lvol_snapshot lvs/lvol0 snap0")
    ok("bdev_lvol_clone lvs/snap0 clone0")
    ok("bdev_lvol_resize lvs/lvol0 48")
    (b,) = ok("bdev_get_bdevs -b lvs/lvol0")
    assert b["block_size"] * b["num_blocks"] == 48 << 20
    ok("bdev_lvol_delete lvs/clone0")
    ok("bdev_null_create Null0 8 4096")
    assert len(ok("bdev_split_create Null0 2")) == 2
    (b,) = ok("bdev_get_bdevs -b Null0p1")
    assert b["num_blocks"] == 1024
    # The --name value form still works beside it.
    (b,) = ok("bdev_get_bdevs --name Malloc0")
    assert b["name"] == "Malloc0"
