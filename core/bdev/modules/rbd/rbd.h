// bdev_rbd: a bdev on a Ceph RBD image through librbd (Debian's librbd-dev).
//
// A cluster connection (rados_t) is either registered once by name (bdev_rbd_register_cluster)
// and shared by every bdev that names it, or made for one bdev from its user_id and config.
// Each bdev opens its image once; every Thread doing I/O gets a channel whose I/O goes to
// rbd_aio_* and whose completions come back on librbd's own threads. Those threads only push
// the finished BdevIo onto the channel's lock-free MPSC ring; the channel's poller, on the
// submitting Thread, completes it. librbd's threads never touch bdev state. librbd allocates a
// completion per I/O (its API has no other way); Strata itself adds no allocation, lock or
// system call per I/O.
//
// Resize: a watch on the image (rbd_update_watch) sets a flag from librbd's thread; a poller on
// the Thread that created the bdev publishes the new size (Event::resize). Connecting to the
// cluster, opening the pool and the image are blocking librbd calls on the control path, bounded
// by client_mount_timeout (30 s unless the config says otherwise).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

using RbdConfig = std::map<std::string, std::string>;  // Ceph option -> value (rados_conf_set)

struct RbdClusterOptions {
    std::string name;
    std::string user_id;      // empty: librados' default (admin)
    RbdConfig config_param;   // set after the config file
    std::string config_file;  // empty: librados' search (CEPH_CONF, /etc/ceph/ceph.conf, ...)
    std::string key_file;     // keyring path; empty: the config's
    std::string core_mask;    // CPUs librbd's threads run on (hex, e.g. "0x2"); empty: any
};

struct RbdOptions {
    std::string name;  // empty: "Ceph<N>", as SPDK
    std::string user_id;
    std::string pool_name;
    std::string rbd_name;
    uint32_t block_size = 0;
    RbdConfig config;  // a private connection's options (no cluster_name)
    bool has_config = false;
    std::string cluster_name;  // a registered cluster; then user_id/config must be empty
    std::string uuid;
    bool read_only = false;
};

extern const Module kRbdModule;

// Control path, on a Thread. Errors name the cluster, pool or image and librados' reason.
Result<void> rbd_register_cluster(const RbdClusterOptions& options);
Result<void> rbd_unregister_cluster(const std::string& name);  // busy while bdevs use it
// SPDK's bdev_rbd_get_clusters_info entries (all, or the one named: not_found otherwise).
Result<nlohmann::json> rbd_clusters_info(const std::string& name);
Result<Bdev*> rbd_create(const RbdOptions& options);
void rbd_delete(const std::string& name, std::function<void(Result<void>)> done);
// Grows the image to new_size_mib MiB (never shrinks, as SPDK); openers get Event::resize.
Result<void> rbd_resize(const std::string& name, uint64_t new_size_mib);

}  // namespace strata::bdev
