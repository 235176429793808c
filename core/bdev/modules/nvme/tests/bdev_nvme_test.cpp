// bdev_nvme against the NVMe controller model: a bdev per namespace, I/O through the bdev layer
// (bounced when the buffer is not DMA memory), reset, namespace add/remove, hot removal, detach.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/bdev/io_fixture.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>

#include "nvme/nvme.h"

namespace strata::bdev {
namespace {

const env::PciAddress kAddr{0, 2, 0, 0};

using testing::Done;

class BdevNvmeTest : public testing::BdevIoFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        bus = std::make_unique<hwemu::PciBus>();
        start_sim(5, 3);
        hwemu::nvme::ControllerConfig cfg;
        cfg.namespaces = {{1, 1 << 16, 512, {}}, {2, 1 << 12, 4096, {}}};
        if (io_latency_ns != 0) {
            cfg.io_latency[0x01] = {hwemu::nvme::LatencySpec::Kind::fixed, io_latency_ns, 0};  // write
            cfg.io_latency[0x02] = {hwemu::nvme::LatencySpec::Kind::fixed, io_latency_ns, 0};  // read
        }
        cfg.enable_delay_ns = enable_delay_ns;
        on(threads[2], [&] {
            auto m = hwemu::nvme::Controller::create(*bus, kAddr, cfg, *threads[2]);
            ASSERT_TRUE(m.ok()) << m.error().message();
            model = std::move(*m);
        });
        std::optional<Result<std::vector<std::string>>> names;
        on(threads[0], [&] {
            nvme_options().bdev_retry_count = bdev_retry_count;
            NvmeAttachOptions o;
            o.name = "Nvme0";
            o.address = kAddr;
            nvme_attach(o, [&](Result<std::vector<std::string>> r) { names = std::move(r); });
        });
        ASSERT_TRUE(poll_until([&] { return names.has_value(); }));
        ASSERT_TRUE(names->ok()) << names->error().message();
        bdev_names = **names;
    }
    void TearDown() override {
        close_rw();
        if (!detached) {
            std::optional<Result<void>> r;
            on(threads[0], [&] { nvme_detach("Nvme0", [&](Result<void> x) { r = std::move(x); }); });
            EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
            if (r) {
                EXPECT_TRUE(r->ok()) << r->error().message();
            }
        }
        on(threads[2], [&] { model.reset(); });
        SimFixture::TearDown();
        bus.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }
    std::unique_ptr<hwemu::PciBus> bus;
    std::unique_ptr<hwemu::nvme::Controller> model;
    std::vector<std::string> bdev_names;
    bool detached = false;
    uint64_t io_latency_ns = 0;   // model latency of reads and writes (virtual time)
    uint64_t enable_delay_ns = 0;  // model time from CC.EN=1 to ready (a reset's length)
    int32_t bdev_retry_count = kDefaultBdevRetryCount;
};

TEST_F(BdevNvmeTest, OneBdevPerNamespace) {
    EXPECT_EQ(bdev_names, (std::vector<std::string>{"Nvme0n1", "Nvme0n2"}));
    Bdev* b1 = find("Nvme0n1");
    ASSERT_NE(b1, nullptr);
    EXPECT_EQ(b1->block_size(), 512u);
    EXPECT_EQ(b1->num_blocks(), 1u << 16);
    EXPECT_EQ(find("Nvme0n2")->block_size(), 4096u);
    auto ctrls = nvme_controllers();
    ASSERT_EQ(ctrls.size(), 1u);
    EXPECT_EQ(ctrls[0].traddr, "0000:02:00.0");
}

TEST_F(BdevNvmeTest, IoThroughTheLayerFromAnotherThread) {
    open_rw("Nvme0n1", threads[1]);
    // Heap memory, unaligned: the layer bounces it into DMA memory for the driver.
    std::vector<uint8_t> w(300 * 512 + 1), r(300 * 512 + 1);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint8_t>(i * 13);
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return write(*desc, *ch, w.data() + 1, 77, 300, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, r.data() + 1, 77, 300, d, c); }).ok());
    EXPECT_EQ(std::memcmp(w.data() + 1, r.data() + 1, 300 * 512), 0);
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return flush(*desc, *ch, 0, 1, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return write_zeroes(*desc, *ch, 77, 10, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return unmap(*desc, *ch, 87, 10, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, r.data() + 1, 77, 20, d, c); }).ok());
    for (size_t i = 1; i < 1 + 20 * 512; ++i) ASSERT_EQ(r[i], 0) << i;
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return reset(*desc, *ch, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, r.data() + 1, 97, 10, d, c); }).ok());
    EXPECT_EQ(std::memcmp(w.data() + 1 + 20 * 512, r.data() + 1, 10 * 512), 0);
}

TEST_F(BdevNvmeTest, NamespaceChangesAddAndRemoveBdevs) {
    on(threads[2], [&] { ASSERT_TRUE(model->add_namespace({3, 1024, 512, {}}).ok()); });
    ASSERT_TRUE(poll_until([&] { return find("Nvme0n3") != nullptr; }));
    on(threads[2], [&] { ASSERT_TRUE(model->remove_namespace(3).ok()); });
    ASSERT_TRUE(poll_until([&] { return find("Nvme0n3") == nullptr; }));
}

TEST_F(BdevNvmeTest, HotRemovalRemovesBdevs) {
    open_rw("Nvme0n1", threads[1]);
    on(threads[2], [&] { ASSERT_TRUE(bus->surprise_remove(kAddr).ok()); });
    ASSERT_TRUE(poll_until([&] { return !events.empty(); }));
    EXPECT_EQ(events[0], Event::remove);
    std::vector<uint8_t> buf(512);
    on(io_thread, [&] { EXPECT_EQ(read(*desc, *ch, buf.data(), 0, 1, &Done::cb, nullptr).code(), Errc::shutdown); });
    close_rw();
    ASSERT_TRUE(poll_until([&] { return find("Nvme0n1") == nullptr && find("Nvme0n2") == nullptr; }));
}

TEST_F(BdevNvmeTest, HotRemovalUnderLoadCompletesEveryIoOnce) {
    open_rw("Nvme0n1", threads[1]);
    std::vector<uint8_t> buf(64 * 4096);
    std::vector<Done> dones(64);
    on(io_thread, [&] {
        for (int i = 0; i < 64; ++i)
            ASSERT_TRUE(write(*desc, *ch, buf.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &dones[i]).ok());
    });
    on(threads[2], [&] { ASSERT_TRUE(bus->surprise_remove(kAddr).ok()); });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : dones)
            if (d.calls == 0) return false;
        return true;
    }));
    int failed = 0;
    for (auto& d : dones) {
        EXPECT_EQ(d.calls, 1);
        failed += d.status.ok() ? 0 : 1;
    }
    EXPECT_GT(failed, 0) << "a removal under load that failed nothing is suspicious";
    ASSERT_TRUE(poll_until([&] { return !events.empty(); }));
    close_rw();
    ASSERT_TRUE(poll_until([&] { return find("Nvme0n1") == nullptr; }));
}

// The bdev's UUID is the namespace's own identity when the device reports one (Namespace UUID,
// else NGUID, else EUI-64 padded), so it survives re-creation; else a random one per creation.
TEST_F(BdevNvmeTest, UuidFromTheNamespaceIdentity) {
    // Namespace 3 again and again with the identifiers it reports: the model derives them from
    // the serial number and nsid, so what is reported is the same every time.
    auto uuid_with = [&](bool eui64, bool nguid, bool uuid) {
        hwemu::nvme::NamespaceConfig c{3, 1024, 512, {}};
        c.report_eui64 = eui64;
        c.report_nguid = nguid;
        c.report_uuid = uuid;
        on(threads[2], [&] { ASSERT_TRUE(model->add_namespace(c).ok()); });
        EXPECT_TRUE(poll_until([&] { return find("Nvme0n3") != nullptr; }));
        Bdev* b = find("Nvme0n3");
        std::string u = b != nullptr ? b->uuid() : "";
        on(threads[2], [&] { ASSERT_TRUE(model->remove_namespace(3).ok()); });
        EXPECT_TRUE(poll_until([&] { return find("Nvme0n3") == nullptr; }));
        return u;
    };
    const std::string all = uuid_with(true, true, true);
    const std::string nguid = uuid_with(true, true, false);
    const std::string eui64 = uuid_with(true, false, false);
    const std::string none1 = uuid_with(false, false, false);
    const std::string none2 = uuid_with(false, false, false);
    EXPECT_EQ(uuid_with(true, true, true), all) << "the device's identity is stable";
    EXPECT_EQ(uuid_with(false, false, true), all) << "the Namespace UUID comes first";
    EXPECT_EQ(uuid_with(false, true, false), nguid) << "then the NGUID";
    EXPECT_EQ(all.size(), 36u);
    EXPECT_EQ(all[14], '4') << all;  // the model's Namespace UUID is a version 4 one
    EXPECT_NE(nguid, all);
    EXPECT_NE(eui64, nguid);
    // EUI-64 in the first 8 bytes, zero padded; the model's OUI byte is 0x52.
    EXPECT_EQ(eui64.substr(0, 2), "52") << eui64;
    EXPECT_EQ(eui64.substr(19), "0000-000000000000") << eui64;
    // Nothing reported: random per creation.
    EXPECT_EQ(none1.size(), 36u);
    EXPECT_EQ(none1[14], '4') << none1;
    EXPECT_NE(none1, none2);
    EXPECT_NE(none1, all);
    // The two default namespaces report all three: distinct, stable UUIDs.
    EXPECT_NE(find("Nvme0n1")->uuid(), find("Nvme0n2")->uuid());
}

// I/O in flight when the controller resets (what a NVMe/TCP connection loss does too: the
// driver ends outstanding commands with "aborted: SQ deletion") waits in the channel and is
// resubmitted after the reconnect, as SPDK's bdev_nvme does.
class BdevNvmeRetryTest : public BdevNvmeTest {
protected:
    BdevNvmeRetryTest() {
        io_latency_ns = 2'000'000;
        enable_delay_ns = 5'000'000;
    }
    static constexpr int kIos = 32;  // writes and reads each, 8 blocks per I/O
    std::vector<uint8_t> pattern(uint8_t seed) {
        std::vector<uint8_t> b(kIos * 8 * 512);
        for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + seed);
        return b;
    }
    // Writes `w` to blocks 0.. and reads blocks 4096.. into `r`, all at once, then resets the
    // controller while they are in flight; returns when every I/O and the reset completed.
    void io_across_reset(std::vector<uint8_t>& w, std::vector<uint8_t>& r, std::vector<Done>& dones,
                         std::optional<Result<void>>& reset_done) {
        dones.assign(2 * kIos, Done{});
        std::vector<uint8_t> one(512);  // the channel's qpair is there (it arrives by message)
        EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, one.data(), 0, 1, d, c); }).ok());
        on(io_thread, [&] {
            for (int i = 0; i < kIos; ++i) {
                ASSERT_TRUE(write(*desc, *ch, w.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &dones[i]).ok());
                ASSERT_TRUE(read(*desc, *ch, r.data() + i * 4096, 4096 + uint64_t(i) * 8, 8, &Done::cb,
                                 &dones[kIos + i]).ok());
            }
        });
        on(threads[0], [&] { nvme_reset("Nvme0", [&](Result<void> x) { reset_done = std::move(x); }); });
        ASSERT_TRUE(poll_until([&] {
            for (auto& d : dones)
                if (d.calls == 0) return false;
            return reset_done.has_value();
        }));
    }
};

TEST_F(BdevNvmeRetryTest, OutstandingIoAcrossAResetCompletesOnceAfterTheReconnect) {
    open_rw("Nvme0n1", threads[1]);
    std::vector<uint8_t> old_data = pattern(1), w = pattern(2), r(w.size());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return write(*desc, *ch, old_data.data(), 4096, kIos * 8, d, c); }).ok());
    std::vector<Done> dones;
    std::optional<Result<void>> reset_done;
    io_across_reset(w, r, dones, reset_done);
    ASSERT_TRUE(reset_done->ok()) << reset_done->error().message();
    for (size_t i = 0; i < dones.size(); ++i) {
        EXPECT_EQ(dones[i].calls, 1) << i;
        EXPECT_TRUE(dones[i].status.ok()) << i << ": " << errc_name(dones[i].status.code);
    }
    EXPECT_EQ(r, old_data) << "reads resubmitted after the reset return the data";
    std::vector<uint8_t> back(w.size());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, back.data(), 0, kIos * 8, d, c); }).ok());
    EXPECT_EQ(back, w) << "writes resubmitted after the reset landed";
    (void)poll_until([] { return false; }, 50'000'000);  // late duplicates would show up
    for (auto& d : dones) EXPECT_EQ(d.calls, 1);
}

TEST_F(BdevNvmeRetryTest, IoSubmittedWhileResettingWaitsAndSucceeds) {
    open_rw("Nvme0n1", threads[1]);
    std::optional<Result<void>> reset_done;
    on(threads[0], [&] { nvme_reset("Nvme0", [&](Result<void> x) { reset_done = std::move(x); }); });
    (void)poll_until([] { return false; }, 1'000'000);  // the queues are closed, the model not ready
    ASSERT_FALSE(reset_done.has_value());
    std::vector<uint8_t> w = pattern(3), r(w.size());
    std::vector<Done> dones(2);
    on(io_thread, [&] {
        ASSERT_TRUE(write(*desc, *ch, w.data(), 0, kIos * 8, &Done::cb, &dones[0]).ok());
    });
    ASSERT_TRUE(poll_until([&] { return dones[0].calls > 0 && reset_done.has_value(); }));
    EXPECT_TRUE(reset_done->ok());
    EXPECT_EQ(dones[0].calls, 1);
    EXPECT_TRUE(dones[0].status.ok()) << errc_name(dones[0].status.code);
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, r.data(), 0, kIos * 8, d, c); }).ok());
    EXPECT_EQ(r, w);
}

// bdev_retry_count 0: no retries, I/O a reset ends fails once with the abort status.
class BdevNvmeNoRetryTest : public BdevNvmeRetryTest {
protected:
    BdevNvmeNoRetryTest() { bdev_retry_count = 0; }
};

TEST_F(BdevNvmeNoRetryTest, ResetAbortsOutstandingIoOnce) {
    open_rw("Nvme0n1", threads[1]);
    std::vector<uint8_t> w = pattern(4), r(w.size());
    std::vector<Done> dones;
    std::optional<Result<void>> reset_done;
    io_across_reset(w, r, dones, reset_done);
    int aborted = 0;
    for (auto& d : dones) {
        EXPECT_EQ(d.calls, 1);
        if (!d.status.ok()) {
            ++aborted;
            EXPECT_EQ(d.status.code, Errc::aborted);
            EXPECT_EQ(d.status.nvme_status, 0x0008) << "SCT 0, SC 08h: aborted, SQ deletion";
        }
    }
    EXPECT_GT(aborted, 0);
}

// bdev_nvme_send_cmd: an admin Identify Controller returns the controller's data; an I/O read
// on the app Thread's qpair returns what was written through the bdev; an unknown controller
// is not_found.
TEST_F(BdevNvmeTest, SendRawAdminAndIoCommands) {
    auto send = [&](NvmeRawCommand cmd) {
        std::optional<Result<NvmeRawResult>> r;
        on(threads[0],
           [&] { nvme_send_cmd(cmd, [&](Result<NvmeRawResult> x) { r = std::move(x); }); });
        EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
        return r ? std::move(*r) : Result<NvmeRawResult>(Error(Errc::timeout, "no answer"));
    };
    NvmeRawCommand id;
    id.name = "Nvme0";
    id.sqe.opc = 0x06;
    id.sqe.cdw10 = 1;  // CNS 1: Identify Controller
    id.data.assign(4096, 0);
    auto r = send(id);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_TRUE(r->cpl.ok());
    ASSERT_EQ(r->data.size(), 4096u);
    nvme::spec::IdentifyController ident;
    std::memcpy(&ident, r->data.data(), sizeof(ident));
    EXPECT_NE(ident.nn, 0u) << "Identify Controller data came back";

    open_rw("Nvme0n1", threads[1]);
    std::vector<uint8_t> w(512);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint8_t>(i * 5 + 1);
    EXPECT_TRUE(
        io([&](IoDoneFn d, void* c) { return write(*desc, *ch, w.data(), 9, 1, d, c); }).ok());
    NvmeRawCommand rd;
    rd.name = "Nvme0";
    rd.admin = false;
    rd.sqe.opc = 0x02;
    rd.sqe.nsid = 1;
    rd.sqe.cdw10 = 9;  // SLBA 9, NLB 0 (one block)
    rd.data.assign(512, 0);
    r = send(rd);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_TRUE(r->cpl.ok());
    EXPECT_EQ(r->data, w);
    rd.sqe.cdw10 = 1u << 24;  // past the namespace: LBA Out of Range
    r = send(rd);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->cpl.ok());

    rd.name = "NoSuch";
    EXPECT_EQ(send(rd).code(), Errc::not_found);
}

// bdev_nvme_add_error_injection on the I/O qpairs: the injected status reaches the bdev I/O
// (no retries here), only err_count times, and removal ends it; an unknown controller is
// not_found. Admin: the health log read fails with the injected status.
TEST_F(BdevNvmeNoRetryTest, ErrorInjectionOnIoAndAdminQueues) {
    open_rw("Nvme0n1", threads[1]);
    std::vector<uint8_t> b(8 * 512);
    auto rd = [&] {
        return io([&](IoDoneFn d, void* c) { return read(*desc, *ch, b.data(), 0, 8, d, c); });
    };
    EXPECT_TRUE(rd().ok());  // the channel's qpair is there (it arrives by message)
    auto change = [&](bool add, bool admin, nvme::ErrorInjection e) {
        std::optional<Result<void>> r;
        on(threads[0], [&] {
            auto cb = [&](Result<void> x) { r = std::move(x); };
            if (add)
                nvme_add_error_injection("Nvme0", admin, e, cb);
            else
                nvme_remove_error_injection("Nvme0", admin, e.opc, cb);
        });
        EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
        return r ? *r : Result<void>(Error(Errc::timeout, "no answer"));
    };
    ASSERT_TRUE(change(true, false, {0x02, false, 0, 2, 2, 0x81}).ok());
    for (int i = 0; i < 2; ++i) {
        auto s = rd();
        EXPECT_FALSE(s.ok());
        EXPECT_EQ(s.nvme_status, 0x0281) << i;
    }
    EXPECT_TRUE(rd().ok()) << "err_count 2";
    ASSERT_TRUE(change(true, false, {0x02, false, 0, 100, 2, 0x81}).ok());
    EXPECT_FALSE(rd().ok());
    ASSERT_TRUE(change(false, false, {0x02}).ok());
    EXPECT_TRUE(rd().ok()) << "removed";

    ASSERT_TRUE(change(true, true, {0x02 /* Get Log Page */, false, 0, 1, 0, 0x09}).ok());
    std::optional<Result<nlohmann::json>> health;
    on(threads[0], [&] {
        nvme_health_info("Nvme0", [&](Result<nlohmann::json> x) { health = std::move(x); });
    });
    ASSERT_TRUE(poll_until([&] { return health.has_value(); }));
    EXPECT_FALSE(health->ok());
    health.reset();
    on(threads[0], [&] {
        nvme_health_info("Nvme0", [&](Result<nlohmann::json> x) { health = std::move(x); });
    });
    ASSERT_TRUE(poll_until([&] { return health.has_value(); }));
    EXPECT_TRUE(health->ok());

    auto missing = [&] {
        std::optional<Result<void>> r;
        on(threads[0], [&] {
            nvme_add_error_injection("NoSuch", false, {},
                                     [&](Result<void> x) { r = std::move(x); });
        });
        EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
        return r->code();
    }();
    EXPECT_EQ(missing, Errc::not_found);
}

// The controller does not come back (removed during the reset): I/O waiting for the reconnect
// fails, each once.
TEST_F(BdevNvmeRetryTest, IoWaitingForAReconnectFailsOnceWhenTheControllerIsGone) {
    open_rw("Nvme0n1", threads[1]);
    std::vector<uint8_t> w = pattern(5), r(w.size());
    std::vector<Done> dones(2 * kIos);
    on(io_thread, [&] {
        for (int i = 0; i < kIos; ++i) {
            ASSERT_TRUE(write(*desc, *ch, w.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &dones[i]).ok());
            ASSERT_TRUE(read(*desc, *ch, r.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &dones[kIos + i]).ok());
        }
    });
    std::optional<Result<void>> reset_done;
    on(threads[0], [&] { nvme_reset("Nvme0", [&](Result<void> x) { reset_done = std::move(x); }); });
    on(threads[2], [&] { ASSERT_TRUE(bus->surprise_remove(kAddr).ok()); });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : dones)
            if (d.calls == 0) return false;
        return true;
    }));
    (void)poll_until([] { return false; }, 50'000'000);  // late duplicates would show up
    int failed = 0;
    for (auto& d : dones) {
        EXPECT_EQ(d.calls, 1);
        failed += d.status.ok() ? 0 : 1;
    }
    EXPECT_GT(failed, 0);
    close_rw();
}

}  // namespace
}  // namespace strata::bdev
