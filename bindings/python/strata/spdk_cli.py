"""SPDK rpc.py's command-line syntax for the common bdev and lvol methods, so SPDK's documented
examples can be typed to strata-rpc as they are:

    strata-rpc bdev_malloc_create 64 512 -b Malloc0
    strata-rpc bdev_lvol_create_lvstore Malloc0 lvs
    strata-rpc bdev_lvol_create -l lvs lvol0 32
    strata-rpc bdev_get_bdevs -b Malloc0

The argument tables are SPDK v24.09's scripts/rpc.py (positionals, short and long options,
types, the MiB -> num_blocks conversion of bdev_malloc_create/bdev_null_create, raid's
whitespace-separated base bdev list). Unlike rpc.py, an option that was not given is not sent
(store_true flags go out only when set). parse() returns (method, params) or raises
SpdkUsageError.
"""

import argparse

# (flags, dest, options) per argument; flags () means positional.
_S = {"type": str}
_I = {"type": int}
_F = {"type": float}
_T = {"action": "store_true"}


def _opt(*flags, dest=None, **kw):
    return (flags, dest, kw)


def _pos(dest, **kw):
    return ((), dest, kw)


METHODS = {
    "bdev_malloc_create": [
        _opt("-b", "--name", dest="name"), _opt("-u", "--uuid", dest="uuid"),
        _pos("total_size", **_F), _pos("block_size", **_I),
        _opt("-p", "--physical-block-size", dest="physical_block_size", **_I),
        _opt("-o", "--optimal-io-boundary", dest="optimal_io_boundary", **_I),
        _opt("-m", "--md-size", dest="md_size", **_I),
        _opt("-i", "--md-interleave", dest="md_interleave", **_T),
        _opt("-t", "--dif-type", dest="dif_type", type=int, choices=[0, 1, 2, 3]),
        _opt("-d", "--dif-is-head-of-md", dest="dif_is_head_of_md", **_T),
        _opt("-f", "--dif-pi-format", dest="dif_pi_format", type=int, choices=[0, 1, 2]),
    ],
    "bdev_malloc_delete": [_pos("name")],
    "bdev_null_create": [
        _pos("name"), _opt("-u", "--uuid", dest="uuid"),
        _pos("total_size", **_I), _pos("block_size", **_I),
        _opt("-p", "--physical-block-size", dest="physical_block_size", **_I),
        _opt("-m", "--md-size", dest="md_size", **_I),
        _opt("-t", "--dif-type", dest="dif_type", type=int, choices=[0, 1, 2, 3]),
        _opt("-d", "--dif-is-head-of-md", dest="dif_is_head_of_md", **_T),
        _opt("-f", "--dif-pi-format", dest="dif_pi_format", type=int, choices=[0, 1, 2]),
    ],
    "bdev_null_delete": [_pos("name")],
    "bdev_aio_create": [
        _pos("filename"), _pos("name"), _pos("block_size", type=int, nargs="?"),
        _opt("-r", "--readonly", dest="readonly", **_T), _opt("--fallocate", dest="fallocate", **_T),
        _opt("-u", "--uuid", dest="uuid"),
    ],
    "bdev_aio_delete": [_pos("name")],
    "bdev_passthru_create": [
        _opt("-b", "--base-bdev-name", dest="base_bdev_name", required=True),
        _opt("-p", "--name", dest="name", required=True), _opt("-u", "--uuid", dest="uuid"),
    ],
    "bdev_passthru_delete": [_pos("name")],
    "bdev_get_bdevs": [_opt("-b", "--name", dest="name"), _opt("-t", "--timeout-ms", dest="timeout", **_I)],
    "bdev_get_iostat": [_opt("-b", "--name", dest="name"), _opt("-c", "--per-channel", dest="per_channel", **_T)],
    "bdev_split_create": [
        _pos("base_bdev"), _opt("-s", "--split-size-mb", dest="split_size_mb", **_I), _pos("split_count", **_I),
    ],
    "bdev_split_delete": [_pos("base_bdev")],
    "bdev_raid_create": [
        _opt("-n", "--name", dest="name", required=True), _opt("-z", "--strip-size-kb", dest="strip_size_kb", **_I),
        _opt("-r", "--raid-level", dest="raid_level", required=True),
        _opt("-b", "--base-bdevs", dest="base_bdevs", required=True), _opt("--uuid", dest="uuid"),
        _opt("-s", "--superblock", dest="superblock", **_T),
    ],
    "bdev_raid_delete": [_pos("name")],
    "bdev_lvol_create_lvstore": [
        _pos("bdev_name"), _pos("lvs_name"), _opt("-c", "--cluster-sz", dest="cluster_sz", **_I),
        _opt("--clear-method", dest="clear_method"),
        _opt("-m", "--md-pages-per-cluster-ratio", dest="num_md_pages_per_cluster_ratio", **_I),
    ],
    "bdev_lvol_rename_lvstore": [_pos("old_name"), _pos("new_name")],
    "bdev_lvol_delete_lvstore": [_opt("-u", "--uuid", dest="uuid"), _opt("-l", "--lvs-name", dest="lvs_name")],
    "bdev_lvol_get_lvstores": [_opt("-u", "--uuid", dest="uuid"), _opt("-l", "--lvs-name", dest="lvs_name")],
    "bdev_lvol_create": [
        _opt("-u", "--uuid", dest="uuid"), _opt("-l", "--lvs-name", dest="lvs_name"),
        _opt("-t", "--thin-provision", dest="thin_provision", **_T), _opt("-c", "--clear-method", dest="clear_method"),
        _pos("lvol_name"), _pos("size_in_mib", **_I),
    ],
    "bdev_lvol_snapshot": [_pos("lvol_name"), _pos("snapshot_name")],
    "bdev_lvol_clone": [_pos("snapshot_name"), _pos("clone_name")],
    "bdev_lvol_rename": [_pos("old_name"), _pos("new_name")],
    "bdev_lvol_resize": [_pos("name"), _pos("size_in_mib", **_I)],
    "bdev_lvol_set_read_only": [_pos("name")],
    "bdev_lvol_inflate": [_pos("name")],
    "bdev_lvol_decouple_parent": [_pos("name")],
    "bdev_lvol_delete": [_pos("name")],
    "bdev_lvol_set_parent": [_pos("lvol_name"), _pos("parent_name")],
    "bdev_lvol_set_parent_bdev": [_pos("lvol_name"), _pos("parent_name")],
    "bdev_lvol_start_shallow_copy": [_pos("src_lvol_name"), _pos("dst_bdev_name")],
    "bdev_lvol_check_shallow_copy": [_pos("operation_id", **_I)],
    "bdev_lvol_get_lvols": [_opt("-u", "--lvs-uuid", dest="lvs_uuid"), _opt("-l", "--lvs-name", dest="lvs_name")],
    "bdev_rbd_register_cluster": [
        _pos("name"), _opt("--user", dest="user_id"),
        _opt("--config-param", dest="config_param", action="append", metavar="key=value"),
        _opt("--config-file", dest="config_file"), _opt("--key-file", dest="key_file"),
        _opt("--core-mask", dest="core_mask"),
    ],
    "bdev_rbd_unregister_cluster": [_pos("name")],
    "bdev_rbd_get_clusters_info": [_opt("-b", "--name", dest="name")],
    "bdev_rbd_create": [
        _opt("-b", "--name", dest="name"), _opt("--user", dest="user_id"),
        _opt("--config", dest="config", action="append", metavar="key=value"),
        _pos("pool_name"), _pos("rbd_name"), _pos("block_size", **_I),
        _opt("-c", "--cluster-name", dest="cluster_name"), _opt("-u", "--uuid", dest="uuid"),
    ],
    "bdev_rbd_delete": [_pos("name")],
    "bdev_rbd_resize": [_pos("name"), _pos("new_size", **_I)],
}


def _key_values(method, option, entries):
    """rpc.py's key=value list (--config-param, --config) as the object the method takes."""
    out = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep:
            raise SpdkUsageError("%s: --%s %s not in key=value form" % (method, option, entry))
        out[key] = value
    return out


class SpdkUsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SpdkUsageError("%s: %s (SPDK rpc.py syntax; usage: %s)" %
                             (self.prog, message, self.format_usage().strip().replace("usage: ", "")))


def _parser(method):
    p = _Parser(prog=method, add_help=False)
    for flags, dest, kw in METHODS[method]:
        if flags:
            p.add_argument(*flags, dest=dest, **kw)
        else:
            p.add_argument(dest, **kw)
    return p


def usage(method):
    return _parser(method).format_usage().strip().replace("usage: ", "")


def parse(method, tokens):
    """(method, params) from SPDK rpc.py arguments; SpdkUsageError if they do not parse."""
    if method not in METHODS:
        raise SpdkUsageError("%s: no SPDK rpc.py syntax known for this method" % method)
    ns = vars(_parser(method).parse_args(tokens))
    params = {}
    for flags, dest, kw in METHODS[method]:
        v = ns.get(dest)
        if v is None or (kw.get("action") == "store_true" and v is False):
            continue  # not given: not sent
        params[dest] = v
    if method in ("bdev_malloc_create", "bdev_null_create"):
        # rpc.py: total size in MiB -> num_blocks
        params["num_blocks"] = int(params.pop("total_size") * 1024 * 1024) // params["block_size"]
    elif method == "bdev_raid_create":
        params["base_bdevs"] = params["base_bdevs"].strip().split()
    elif method == "bdev_rbd_register_cluster" and "config_param" in params:
        params["config_param"] = _key_values(method, "config-param", params["config_param"])
    elif method == "bdev_rbd_create" and "config" in params:
        params["config"] = _key_values(method, "config", params["config"])
    return method, params
