// virtio_blk over the virtio-pci transport on the sim backend: a simulated App whose Host has
// hw-emulation's virtio-blk PCI model on its bus. Attach by RPC, verified I/O (the model's media
// holds the pattern), the device reset at detach, a bad used ring failing I/O instead of hanging,
// and refusals (not a virtio function of that type).
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/hwemu/virtio/blk.h>

#include <cstring>

#include <strata/env/memory.h>

#include <strata/bdev/vbdev_fixture.h>
#include "virtio/virtio.h"

namespace strata::bdev::testing {
namespace {

const env::PciAddress kAddr{0, 3, 0, 0};

class VirtioPciTest : public VbdevTest {
protected:
    void SetUp() override { start_pci_world(); }
    void TearDown() override { stop_pci_world(); }

    void start_pci_world() {
        start_world(1, std::nullopt, [this] {
            // The channel stays runnable while I/O is in flight: steps cost time, so a device
            // that never answers fails a test's deadline instead of stalling the clock.
            sim->step_cost_ns = 1000;
            bus = std::make_unique<hwemu::PciBus>(app->host());
            hwemu::virtio::BlkConfig cfg;
            cfg.capacity_bytes = 4 << 20;
            cfg.queue_size_max = 128;
            on(worker, [&] {
                auto m = hwemu::virtio::BlkModel::create(*bus, kAddr, cfg, *worker);
                ASSERT_TRUE(m.ok()) << m.error().message();
                model = std::move(*m);
            });
        });
    }
    void stop_pci_world() {
        if (app) {
            app->request_stop();
            EXPECT_TRUE(poll_until([&] { return app->stopped(); }));
            if (model) on(worker, [&] { model.reset(); });
            bus.reset();
        }
        stop_world();
    }
    Json attach_params() {
        return {{"name", "VirtioPci0"}, {"trtype", "pci"}, {"traddr", kAddr.to_string()},
                {"dev_type", "blk"},    {"vq_count", 1},   {"vq_size", 512}};
    }
    // env DMA memory: virtio-pci sends data buffers as they are (no bounce).
    struct DmaBuf {
        void* p = nullptr;
        explicit DmaBuf(size_t n) { p = *env::dma_alloc(n, 4096, true); }
        ~DmaBuf() { env::dma_free(p); }
        uint8_t* data() { return static_cast<uint8_t*>(p); }
    };
    IoStatus rw(Handle& h, bool is_write, uint64_t off, uint8_t* buf, uint64_t blocks) {
        return io([&](IoDoneFn f, void* c) {
            return is_write ? write(*h.desc, *h.ch, buf, off, blocks, f, c)
                            : read(*h.desc, *h.ch, buf, off, blocks, f, c);
        });
    }

    std::unique_ptr<hwemu::PciBus> bus;
    std::unique_ptr<hwemu::virtio::BlkModel> model;
};

TEST_F(VirtioPciTest, AttachIoWithAPatternDetachResets) {
    EXPECT_EQ(call("bdev_virtio_attach_controller", attach_params()), Json::array({"VirtioPci0"}));
    settle();
    Json info = call("bdev_get_bdevs", {{"name", "VirtioPci0"}});
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0]["num_blocks"], (4 << 20) / 512);
    EXPECT_EQ(info[0]["driver_specific"]["virtio_blk"]["trtype"], "pci");
    EXPECT_EQ(info[0]["driver_specific"]["virtio_blk"]["traddr"], kAddr.to_string());
    Handle& h = open("VirtioPci0");
    DmaBuf w(16384), r(16384);
    for (int round = 0; round < 4; ++round) {
        const auto pat = pattern(16384, round);
        std::memcpy(w.data(), pat.data(), pat.size());
        const uint64_t off = 100 + 64 * round;
        ASSERT_TRUE(rw(h, true, off, w.data(), 32).ok());
        // The model's media holds what was written, where it was written.
        ASSERT_EQ(std::memcmp(model->storage().data() + off * 512, pat.data(), pat.size()), 0);
        std::memset(r.data(), 0, 16384);
        ASSERT_TRUE(rw(h, false, off, r.data(), 32).ok());
        ASSERT_EQ(std::memcmp(r.data(), pat.data(), pat.size()), 0);
    }
    // A buffer that is not DMA memory goes through the layer's bounce (needs_dma_memory).
    std::vector<uint8_t> heap(16384);
    ASSERT_TRUE(rw(h, false, 100 + 64 * 3, heap.data(), 32).ok());
    EXPECT_EQ(heap, pattern(16384, 3));
    close(h);
    EXPECT_EQ(bus->find(kAddr)->dma_fault_count(), 0u);
    const uint64_t resets = model->resets();
    EXPECT_EQ(call("bdev_virtio_detach_controller", {{"name", "VirtioPci0"}}), true);
    settle();
    EXPECT_FALSE(exists("VirtioPci0"));
    EXPECT_GT(model->resets(), resets);  // reset before its queue memory was freed
    EXPECT_EQ(model->device_status(), 0);
}

TEST_F(VirtioPciTest, BadUsedRingFailsIoAndNeverHangs) {
    EXPECT_EQ(call("bdev_virtio_attach_controller", attach_params()), Json::array({"VirtioPci0"}));
    settle();
    Handle& h = open("VirtioPci0");
    DmaBuf b(4096);
    ASSERT_TRUE(rw(h, false, 0, b.data(), 8).ok());
    on(worker, [&] { model->corrupt_used_id = true; });
    EXPECT_EQ(rw(h, false, 0, b.data(), 8).code, Errc::io_error);
    EXPECT_EQ(rw(h, false, 8, b.data(), 8).code, Errc::io_error);  // the queue stays stopped
    close(h);
}

TEST_F(VirtioPciTest, RefusesWhatIsNotAVirtioBlkFunction) {
    Json p = attach_params();
    p["traddr"] = "0000:07:00.0";  // nothing there
    EXPECT_NE(call_error("bdev_virtio_attach_controller", p)["message"].get<std::string>().find(
                  "0000:07:00.0"),
              std::string::npos);
    p = attach_params();
    p["dev_type"] = "scsi";
    call_error("bdev_virtio_attach_controller", p);
    EXPECT_FALSE(exists("VirtioPci0"));
    // The function is free again after the refusals: attach works.
    EXPECT_EQ(call("bdev_virtio_attach_controller", attach_params()), Json::array({"VirtioPci0"}));
}

}  // namespace
}  // namespace strata::bdev::testing
