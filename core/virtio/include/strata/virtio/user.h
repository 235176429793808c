// virtio-user: Strata as the vhost-user FRONT END of another process's Unix socket (QEMU's
// qemu-storage-daemon, SPDK's or Strata's own vhost target), giving a virtio Device.
//
// Shared memory: a vhost-user back end can only reach memory the front end passed it by fd in
// SET_MEM_TABLE. open_user() creates one memfd, maps it, lays out every queue's rings, indirect
// tables and the caller's per-queue extra bytes in it, and registers it as the one memory
// region, whose "guest physical" addresses are this process's virtual addresses (as SPDK's
// virtio-user does). Device::device_address() answers for that region only: a buffer anywhere
// else (e.g. env::dma_alloc memory, which is not fd-backed today) is not reachable by the back
// end and must be bounced into queue_extra() memory by the caller; it is never sent.
//
// Protocol: SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES (MQ, REPLY_ACK, CONFIG),
// GET_QUEUE_NUM, SET_FEATURES, SET_MEM_TABLE, then per queue SET_VRING_NUM/BASE/ADDR/KICK/CALL
// and SET_VRING_ENABLE; GET_CONFIG on demand; GET_VRING_BASE per queue at close. The socket is
// blocking with a 5 s timeout (control path only); kick is an eventfd write per batch; the call
// eventfds are passed but never read (the driver polls the used rings and asks for no
// interrupts). This file's implementation is a backend in the style guide's sense: it alone in
// core/virtio makes the socket, memfd, mmap and eventfd system calls.
//
// Packed rings: with packed_ring set and VIRTIO_F_RING_PACKED offered, every queue is packed;
// SET_VRING_BASE then carries QEMU's encoding (avail index | wrap << 15, the used half the
// same in bits 16-31: 0x80008000 for a fresh queue).
//
// Planned: reconnect after a back-end restart, inflight tracking (GET/SET_INFLIGHT_FD),
// ADD_MEM_REG for more memory regions (env DMA memory shared without a copy).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <strata/base/status.h>
#include <strata/virtio/device.h>

namespace strata::virtio {

struct UserOptions {
    std::string socket_path;
    uint32_t device_type = spec::kDeviceTypeBlock;  // what the caller expects (not on the wire)
    uint16_t num_queues = 1;
    uint16_t queue_size = 256;     // power of two
    uint16_t max_indirect = 64;    // descriptors per indirect table
    uint64_t device_features = 0;  // device-specific feature bits the driver can use
    size_t queue_extra_bytes = 0;  // per-queue memory for the caller, shared with the back end
    bool packed_ring = false;      // negotiate VIRTIO_F_RING_PACKED when the back end offers it
};

// Connects and initializes (control path: blocking socket I/O, up to 5 s per reply). Errors
// name the step and the socket: Errc::not_found / connection_refused style errors from connect,
// Errc::not_supported when the back end lacks VIRTIO_F_VERSION_1 or enough queues,
// Errc::protocol_error for a malformed reply.
Result<std::unique_ptr<Device>> open_user(const UserOptions& options);

}  // namespace strata::virtio
