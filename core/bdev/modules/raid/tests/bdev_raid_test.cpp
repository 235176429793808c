// bdev_raid under the simulator: raid0/concat/raid1 data placement across strip boundaries, a
// verify workload from two Threads, raid1 losing a member under load (no failed acknowledged
// write, every acknowledged block readable), read retry on the other mirror, rebuild onto a
// replacement under load and then removal of the original, configuring -> online in any order,
// the control functions' errors and the save_config entries.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/random.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/bdev/io_fixture.h>

#include "malloc/malloc.h"
#include "raid/raid.h"

namespace strata::bdev {
namespace {

using nlohmann::json;

const Module kFaultyModule{"faulty", nullptr};

// An in-memory bdev whose writes or reads can be made to fail, standing in for a dying disk.
class FaultyBdev final : public Bdev {
public:
    explicit FaultyBdev(Properties p) : Bdev(kFaultyModule, std::move(p)), data(num_blocks() * block_size()) {}
    bool supports(IoType t) const noexcept override {
        return t == IoType::read || t == IoType::write || t == IoType::flush || t == IoType::reset;
    }
    runtime::IoDevice& module_io_device() noexcept override { return stateless_io_device(); }
    void submit(runtime::IoChannel&, BdevIo& io) noexcept override {
        const bool is_read = io.type() == IoType::read;
        if ((is_read && fail_reads) || (io.type() == IoType::write && fail_writes)) {
            ++failed;
            io.complete(Errc::io_error);
            return;
        }
        if (is_read || io.type() == IoType::write) {
            size_t pos = io.offset_blocks() * block_size();
            const size_t end = pos + io.length_bytes();
            for (const iovec& v : io.iovs()) {
                const size_t n = std::min(v.iov_len, end - pos);
                if (is_read) std::memcpy(v.iov_base, data.data() + pos, n);
                else std::memcpy(data.data() + pos, v.iov_base, n);
                pos += n;
                if (pos == end) break;
            }
        }
        io.complete(Errc::ok);
    }
    std::vector<uint8_t> data;
    bool fail_writes = false, fail_reads = false;
    uint64_t failed = 0;
};

using testing::Done;

// Block content: tag 0 is zeroes (fresh malloc); otherwise the lba and tag, repeated.
void fill_block(uint8_t* p, uint32_t bs, uint64_t lba, uint64_t tag) {
    if (tag == 0) {
        std::memset(p, 0, bs);
        return;
    }
    for (uint32_t i = 0; i < bs; i += 16) {
        std::memcpy(p + i, &lba, 8);
        std::memcpy(p + i + 8, &tag, 8);
    }
}
bool block_is(const uint8_t* p, uint32_t bs, uint64_t lba, uint64_t tag) {
    std::vector<uint8_t> want(bs);
    fill_block(want.data(), bs, lba, tag);
    return std::memcmp(p, want.data(), bs) == 0;
}

// A verify workload on one Thread: `qd` workers, each owning a region of the bdev, loop on
// write (random offset and length inside the region) then read back and compare. Acknowledged
// writes update the expected tags; a failed write leaves its blocks unknown.
class Load {
public:
    Load(runtime::Thread& t, std::string bdev, uint64_t first_block, uint64_t blocks, uint32_t qd,
         uint32_t max_io_blocks, uint64_t seed)
        : thread_(t), name_(std::move(bdev)), first_(first_block), blocks_(blocks), prng_(seed) {
        workers_.resize(qd);
        region_ = blocks / qd;
        max_io_ = max_io_blocks;
    }
    ~Load() { STRATA_ASSERT(desc_ == nullptr); }

    void start() {  // on the Thread
        auto d = open(name_, true);
        STRATA_ASSERT(d.ok());
        desc_ = std::move(*d);
        ch_ = desc_->get_channel();
        bs_ = desc_->bdev().block_size();
        tags_.assign(blocks_, 0);
        for (uint32_t i = 0; i < workers_.size(); ++i) {
            Worker& w = workers_[i];
            w.load = this;
            w.index = i;
            w.buf.resize(size_t(max_io_) * bs_);
            issue_write(w);
        }
    }
    void stop_and_close() {  // on the Thread, once idle()
        put_channel(ch_);
        ch_ = nullptr;
        desc_.reset();
    }
    bool idle() const { return outstanding_ == 0; }

    bool stop = false;
    uint64_t writes_ok = 0, writes_failed = 0, reads_ok = 0, reads_failed = 0, miscompares = 0;
    std::vector<uint64_t> tags_;  // expected tag per block of [first, first + blocks)

private:
    struct Worker {
        Load* load;
        uint32_t index;
        uint64_t off = 0, n = 0, tag = 0;
        std::vector<uint8_t> buf;
    };
    void issue_write(Worker& w) {
        if (stop) return;
        const uint64_t base = first_ + uint64_t(w.index) * region_;
        w.n = prng_.range(1, std::min<uint64_t>(max_io_, region_));
        w.off = base + prng_.uniform(region_ - w.n + 1);
        w.tag = ++next_tag_;
        for (uint64_t b = 0; b < w.n; ++b) fill_block(w.buf.data() + b * bs_, bs_, w.off + b, w.tag);
        ++outstanding_;
        STRATA_ASSERT(write(*desc_, *ch_, w.buf.data(), w.off, w.n, &Load::write_done, &w).ok());
    }
    static void write_done(void* p, const IoStatus& s) {
        auto& w = *static_cast<Worker*>(p);
        Load& l = *w.load;
        --l.outstanding_;
        if (s.ok()) {
            ++l.writes_ok;
            for (uint64_t b = 0; b < w.n; ++b) l.tags_[w.off + b - l.first_] = w.tag;
        } else {
            ++l.writes_failed;
            for (uint64_t b = 0; b < w.n; ++b) l.tags_[w.off + b - l.first_] = UINT64_MAX;
        }
        if (l.stop) return;
        std::memset(w.buf.data(), 0xEE, w.n * l.bs_);
        ++l.outstanding_;
        STRATA_ASSERT(read(*l.desc_, *l.ch_, w.buf.data(), w.off, w.n, &Load::read_done, &w).ok());
    }
    static void read_done(void* p, const IoStatus& s) {
        auto& w = *static_cast<Worker*>(p);
        Load& l = *w.load;
        --l.outstanding_;
        if (!s.ok()) {
            ++l.reads_failed;
        } else {
            ++l.reads_ok;
            for (uint64_t b = 0; b < w.n; ++b) {
                const uint64_t tag = l.tags_[w.off + b - l.first_];
                if (tag != UINT64_MAX && !block_is(w.buf.data() + b * l.bs_, l.bs_, w.off + b, tag))
                    ++l.miscompares;
            }
        }
        l.issue_write(w);
    }

    runtime::Thread& thread_;
    std::string name_;
    uint64_t first_, blocks_, region_ = 0;
    uint32_t max_io_ = 0, bs_ = 0;
    Prng prng_;
    std::unique_ptr<Desc> desc_;
    Channel* ch_ = nullptr;
    std::vector<Worker> workers_;
    uint64_t next_tag_ = 0;
    uint32_t outstanding_ = 0;
};

class RaidTest : public testing::BdevIoFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        const char* env_seed = std::getenv("STRATA_SIM_SEED");
        start_sim(env_seed != nullptr ? std::strtoull(env_seed, nullptr, 0) : 7, 3);
        // The loads below keep the world busy: charge each step so virtual time (and the raid's
        // timed control-path waits) moves on, as bdevperf --sim does.
        sim->step_cost_ns = 50;
        register_module(kRaidModule);
        register_module(kFaultyModule);
    }
    void TearDown() override {
        for (auto& l : loads) stop_load(*l);
        loads.clear();
        close_rw();
        // Raids first (their members are claimed), then everything else.
        json all;
        on(t0(), [&] { all = *raid_get_bdevs("all"); });
        for (auto& r : all) {
            std::optional<Result<void>> res;
            on(t0(), [&] { raid_delete(r["name"].get<std::string>(), [&](Result<void> x) { res = std::move(x); }); });
            EXPECT_TRUE(poll_until([&] { return res.has_value(); }));
            if (res) {
                EXPECT_TRUE(res->ok()) << res->error().message();
            }
        }
        for (Bdev* b : list()) {
            bool gone = false;
            on(t0(), [&] { unregister_bdev(b->name(), [&](Result<void>) { gone = true; }); });
            EXPECT_TRUE(poll_until([&] { return gone; }));
        }
        run_until_idle();
        SimFixture::TearDown();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }
    runtime::Thread* t0() { return threads[0]; }

    void make_malloc(const std::string& name, uint64_t blocks, uint32_t bs = 512) {
        on(t0(), [&] { ASSERT_TRUE(malloc_create({name, blocks, bs, {}, 0}).ok()); });
    }
    FaultyBdev* make_faulty(const std::string& name, uint64_t blocks, uint32_t bs = 512) {
        Bdev::Properties p;
        p.name = name;
        p.num_blocks = blocks;
        p.block_size = bs;
        auto b = std::make_unique<FaultyBdev>(std::move(p));
        FaultyBdev* raw = b.get();
        on(t0(), [&] { ASSERT_TRUE(register_bdev(std::move(b)).ok()); });
        return raw;
    }
    Result<void> create(const std::string& name, RaidLevel level, std::vector<std::string> bases,
                        uint32_t strip_kb) {
        Result<void> r;
        on(t0(), [&] { r = raid_create({name, level, std::move(bases), strip_kb, {}, false}); });
        return r;
    }
    json raid(const std::string& name) {
        json out;
        on(t0(), [&] {
            auto all = raid_get_bdevs("all");
            for (auto& r : *all)
                if (r["name"] == name) out = r;
        });
        return out;
    }
    // Reads a whole bdev by name (t0, its own desc).
    std::vector<uint8_t> read_all(const std::string& name) {
        std::unique_ptr<Desc> d;
        Channel* c = nullptr;
        on(t0(), [&] {
            auto r = open(name, false);
            ASSERT_TRUE(r.ok());
            d = std::move(*r);
            c = d->get_channel();
        });
        const uint64_t n = d->bdev().num_blocks();
        const uint32_t bs = d->bdev().block_size();
        std::vector<uint8_t> out(n * bs);
        for (uint64_t off = 0; off < n; off += 256) {
            const uint64_t k = std::min<uint64_t>(256, n - off);
            EXPECT_TRUE(io([&](IoDoneFn f, void* x) { return read(*d, *c, out.data() + off * bs, off, k, f, x); }).ok());
        }
        on(t0(), [&] {
            put_channel(c);
            d.reset();
        });
        return out;
    }
    Load& start_load(runtime::Thread* t, const std::string& name, uint64_t first, uint64_t blocks,
                     uint32_t qd, uint32_t max_io, uint64_t seed) {
        loads.push_back(std::make_unique<Load>(*t, name, first, blocks, qd, max_io, seed));
        Load& l = *loads.back();
        on(t, [&] { l.start(); });
        return l;
    }
    void stop_load(Load& l) {
        if (l.stop && l.idle()) return;
        l.stop = true;
        EXPECT_TRUE(poll_until([&] { return l.idle(); }));
    }
    void close_load(runtime::Thread* t, Load& l) {
        stop_load(l);
        on(t, [&] { l.stop_and_close(); });
    }
    void check_model(const Load& l, const std::vector<uint8_t>& data, uint64_t first, uint32_t bs) {
        uint64_t bad = 0;
        for (uint64_t b = 0; b < l.tags_.size(); ++b) {
            const uint64_t tag = l.tags_[b];
            if (tag == UINT64_MAX) continue;
            if (!block_is(data.data() + (first + b) * bs, bs, first + b, tag)) ++bad;
        }
        EXPECT_EQ(bad, 0u) << "acknowledged blocks that do not read back";
    }

    std::vector<std::unique_ptr<Load>> loads;
};

TEST(RaidGeometry, Raid0MemberRangeMatchesBlockByBlockMapping) {
    for (uint64_t strip : {1, 4, 8}) {
        for (uint32_t n : {1u, 2u, 3u, 5u}) {
            for (uint64_t a = 0; a < 3 * strip * n + 3; ++a) {
                for (uint64_t len = 1; len < 4 * strip * n; ++len) {
                    for (uint32_t m = 0; m < n; ++m) {
                        uint64_t lo = UINT64_MAX, hi = 0, count = 0;
                        for (uint64_t b = a; b < a + len; ++b) {
                            const uint64_t s = b / strip;
                            if (s % n != m) continue;
                            const uint64_t mb = (s / n) * strip + b % strip;
                            lo = std::min(lo, mb);
                            hi = std::max(hi, mb);
                            ++count;
                        }
                        const MemberRange r = raid0_member_range(a, len, strip, n, m);
                        ASSERT_EQ(r.num_blocks, count) << a << "+" << len << " strip " << strip << " n " << n;
                        if (count != 0) {
                            ASSERT_EQ(r.offset_blocks, lo);
                            ASSERT_EQ(hi - lo + 1, count);  // contiguous on the member
                        }
                    }
                }
            }
        }
    }
}

TEST_F(RaidTest, Raid0StripesAcrossMembers) {
    for (int i = 0; i < 3; ++i) make_malloc("M" + std::to_string(i), 1000 + 7 * i);
    ASSERT_TRUE(create("R0", RaidLevel::raid0, {"M0", "M1", "M2"}, 4).ok());  // 8-block strips
    Bdev* b = find("R0");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->num_blocks(), 3u * 1000);  // the smallest member, in whole strips, per member
    EXPECT_EQ(b->properties().optimal_io_boundary, 8u);
    EXPECT_STREQ(find("M1")->claimed_by(), "raid");
    open_rw("R0");
    const uint32_t bs = 512;
    const uint64_t n = b->num_blocks();
    std::vector<uint8_t> w(n * bs);
    Prng prng(3);
    for (uint64_t lba = 0; lba < n; ++lba) fill_block(w.data() + lba * bs, bs, lba, prng.range(1, 1000));
    // Unaligned pieces, most of them crossing strip boundaries.
    for (uint64_t off = 0; off < n;) {
        const uint64_t k = std::min<uint64_t>(prng.range(1, 40), n - off);
        ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return write(*desc, *ch, w.data() + off * bs, off, k, f, c); }).ok());
        off += k;
    }
    std::vector<uint8_t> r(n * bs);
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return read(*desc, *ch, r.data() + 5 * bs, 5, 101, f, c); }).ok());
    EXPECT_EQ(std::memcmp(r.data() + 5 * bs, w.data() + 5 * bs, 101 * bs), 0);
    // Each member holds its strips: raid block b is on member (b/8)%3 at ((b/8)/3)*8 + b%8.
    for (uint32_t m = 0; m < 3; ++m) {
        auto md = read_all("M" + std::to_string(m));
        for (uint64_t lba = 0; lba < n; ++lba) {
            const uint64_t s = lba / 8;
            if (s % 3 != m) continue;
            const uint64_t mb = (s / 3) * 8 + lba % 8;
            ASSERT_EQ(std::memcmp(md.data() + mb * bs, w.data() + lba * bs, bs), 0) << "raid block " << lba;
        }
    }
    // Unmap and write zeroes fan out over the members a range touches.
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*desc, *ch, 3, 50, f, c); }).ok());
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return write_zeroes(*desc, *ch, 100, 30, f, c); }).ok());
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return flush(*desc, *ch, 0, n, f, c); }).ok());
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*desc, *ch, f, c); }).ok());
    auto all = read_all("R0");
    for (uint64_t lba = 0; lba < 200; ++lba) {
        const bool zero = (lba >= 3 && lba < 53) || (lba >= 100 && lba < 130);
        if (zero) ASSERT_TRUE(block_is(all.data() + lba * bs, bs, lba, 0)) << lba;
        else ASSERT_EQ(std::memcmp(all.data() + lba * bs, w.data() + lba * bs, bs), 0) << lba;
    }
    json j = raid("R0");
    EXPECT_EQ(j["state"], "online");
    EXPECT_EQ(j["raid_level"], "raid0");
    EXPECT_EQ(j["strip_size_kb"], 4);
    EXPECT_EQ(j["num_base_bdevs_discovered"], 3);
}

TEST_F(RaidTest, ConcatPutsMembersEndToEnd) {
    make_malloc("C0", 100);
    make_malloc("C1", 200);
    make_malloc("C2", 300);
    ASSERT_TRUE(create("Cat", RaidLevel::concat, {"C0", "C1", "C2"}, 4).ok());
    Bdev* b = find("Cat");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->num_blocks(), 96u + 200u + 296u);
    open_rw("Cat");
    const uint32_t bs = 512;
    const uint64_t n = b->num_blocks();
    std::vector<uint8_t> w(n * bs);
    for (uint64_t lba = 0; lba < n; ++lba) fill_block(w.data() + lba * bs, bs, lba, 7);
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return write(*desc, *ch, w.data(), 0, n, f, c); }).ok());
    std::vector<uint8_t> r(120 * bs);
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return read(*desc, *ch, r.data(), 90, 120, f, c); }).ok());
    EXPECT_EQ(std::memcmp(r.data(), w.data() + 90 * bs, 120 * bs), 0);
    auto c1 = read_all("C1");
    EXPECT_EQ(std::memcmp(c1.data(), w.data() + 96 * bs, 200 * bs), 0);
    auto c2 = read_all("C2");
    EXPECT_EQ(std::memcmp(c2.data(), w.data() + 296 * bs, 296 * bs), 0);
    auto c0 = read_all("C0");
    EXPECT_TRUE(block_is(c0.data() + 96 * bs, bs, 96, 0)) << "the tail past the last strip is unused";
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*desc, *ch, 90, 220, f, c); }).ok());
    auto all = read_all("Cat");
    for (uint64_t lba = 85; lba < 315; ++lba) {
        if (lba >= 90 && lba < 310) ASSERT_TRUE(block_is(all.data() + lba * bs, bs, lba, 0)) << lba;
        else ASSERT_TRUE(block_is(all.data() + lba * bs, bs, lba, 7)) << lba;
    }
}

TEST_F(RaidTest, Raid1MirrorsWritesAndRetriesFailedReads) {
    FaultyBdev* a = make_faulty("A", 600);
    make_malloc("B", 512);
    ASSERT_TRUE(create("Mirror", RaidLevel::raid1, {"A", "B"}, 0).ok());
    ASSERT_EQ(find("Mirror")->num_blocks(), 512u);
    open_rw("Mirror");
    const uint32_t bs = 512;
    std::vector<uint8_t> w(64 * bs), r(64 * bs);
    for (uint64_t b = 0; b < 64; ++b) fill_block(w.data() + b * bs, bs, 100 + b, 9);
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return write(*desc, *ch, w.data(), 100, 64, f, c); }).ok());
    EXPECT_EQ(std::memcmp(a->data.data() + 100 * bs, w.data(), 64 * bs), 0);
    auto bd = read_all("B");
    EXPECT_EQ(std::memcmp(bd.data() + 100 * bs, w.data(), 64 * bs), 0);
    a->fail_reads = true;
    for (int i = 0; i < 4; ++i) {  // whichever mirror is picked, the data comes back
        std::memset(r.data(), 0, r.size());
        ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return read(*desc, *ch, r.data(), 100, 64, f, c); }).ok());
        EXPECT_EQ(std::memcmp(r.data(), w.data(), 64 * bs), 0);
    }
    EXPECT_GT(a->failed, 0u);
    EXPECT_EQ(raid("Mirror")["num_base_bdevs_operational"], 2) << "a failed read does not degrade";
    a->fail_reads = false;
}

TEST_F(RaidTest, VerifyWorkloadFromTwoThreads) {
    for (int i = 0; i < 3; ++i) make_malloc("V" + std::to_string(i), 4096);
    make_malloc("W0", 4096);
    make_malloc("W1", 4096);
    ASSERT_TRUE(create("Stripe", RaidLevel::raid0, {"V0", "V1", "V2"}, 8).ok());
    ASSERT_TRUE(create("Mir", RaidLevel::raid1, {"W0", "W1"}, 0).ok());
    Load& l1 = start_load(threads[1], "Stripe", 0, 6000, 16, 70, 11);
    Load& l2 = start_load(threads[2], "Stripe", 6000, 6000, 16, 70, 12);
    Load& l3 = start_load(threads[1], "Mir", 0, 2048, 8, 40, 13);
    Load& l4 = start_load(threads[2], "Mir", 2048, 2048, 8, 40, 14);
    ASSERT_TRUE(poll_until([&] { return l1.reads_ok > 2000 && l2.reads_ok > 2000 && l3.reads_ok > 1000 &&
                                        l4.reads_ok > 1000; },
                           60ull * 1'000'000'000));
    close_load(threads[1], l1);
    close_load(threads[2], l2);
    close_load(threads[1], l3);
    close_load(threads[2], l4);
    for (Load* l : {&l1, &l2, &l3, &l4}) {
        EXPECT_EQ(l->miscompares, 0u);
        EXPECT_EQ(l->writes_failed, 0u);
        EXPECT_EQ(l->reads_failed, 0u);
    }
    auto s = read_all("Stripe");
    check_model(l1, s, 0, 512);
    check_model(l2, s, 6000, 512);
    auto w0 = read_all("W0"), w1 = read_all("W1");
    EXPECT_EQ(w0, w1) << "the mirrors differ";
    check_model(l3, w0, 0, 512);
    check_model(l4, w0, 2048, 512);
}

TEST_F(RaidTest, Raid1LosesAMemberUnderLoadWithoutFailingAcknowledgedWrites) {
    FaultyBdev* a = make_faulty("A", 4096);
    make_malloc("B", 4096);
    ASSERT_TRUE(create("Mirror", RaidLevel::raid1, {"A", "B"}, 0).ok());
    Load& l1 = start_load(threads[1], "Mirror", 0, 2048, 16, 32, 21);
    Load& l2 = start_load(threads[2], "Mirror", 2048, 2048, 16, 32, 22);
    ASSERT_TRUE(poll_until([&] { return l1.writes_ok > 300 && l2.writes_ok > 300; }));
    a->fail_writes = true;  // the disk dies with writes in flight on both Threads
    ASSERT_TRUE(poll_until([&] { return raid("Mirror")["num_base_bdevs_operational"] == 1; }));
    const uint64_t w1 = l1.writes_ok, w2 = l2.writes_ok;
    ASSERT_TRUE(poll_until([&] { return l1.writes_ok > w1 + 300 && l2.writes_ok > w2 + 300; }));
    close_load(threads[1], l1);
    close_load(threads[2], l2);
    EXPECT_GT(a->failed, 0u);
    for (Load* l : {&l1, &l2}) {
        EXPECT_EQ(l->writes_failed, 0u) << "a write failed although a mirror took it";
        EXPECT_EQ(l->reads_failed, 0u);
        EXPECT_EQ(l->miscompares, 0u);
    }
    // The failed member leaves its slot once no channel uses it any more.
    ASSERT_TRUE(poll_until([&] { return raid("Mirror")["base_bdevs_list"][0]["name"].is_null(); }))
        << raid("Mirror").dump();
    EXPECT_EQ(raid("Mirror")["state"], "online");
    EXPECT_EQ(find("A")->claimed_by(), std::string()) << "the failed member is released";
    auto data = read_all("Mirror");
    check_model(l1, data, 0, 512);
    check_model(l2, data, 2048, 512);
}

TEST_F(RaidTest, Raid1WriteFailingOnEveryMemberFailsAndTakesTheRaidOffline) {
    FaultyBdev* a = make_faulty("A", 256);
    FaultyBdev* b = make_faulty("B", 256);
    ASSERT_TRUE(create("Mirror", RaidLevel::raid1, {"A", "B"}, 0).ok());
    open_rw("Mirror");
    std::vector<uint8_t> w(8 * 512);
    a->fail_writes = b->fail_writes = true;
    const IoStatus s = io([&](IoDoneFn f, void* c) { return write(*desc, *ch, w.data(), 0, 8, f, c); });
    EXPECT_EQ(s.code, Errc::io_error) << "a write no member holds must not be acknowledged";
    ASSERT_TRUE(poll_until([&] { return raid("Mirror")["state"] == "offline"; })) << raid("Mirror").dump();
    on(t0(), [&] {
        put_channel(ch);
        ch = nullptr;
        desc.reset();
    });
    ASSERT_TRUE(poll_until([&] { return find("A")->claimed_by()[0] == '\0'; }));
}

TEST_F(RaidTest, Raid1MemberHotRemovedUnderLoad) {
    make_malloc("A", 4096);
    make_malloc("B", 4096);
    ASSERT_TRUE(create("Mirror", RaidLevel::raid1, {"A", "B"}, 0).ok());
    Load& l1 = start_load(threads[1], "Mirror", 0, 4096, 32, 32, 31);
    ASSERT_TRUE(poll_until([&] { return l1.writes_ok > 500; }));
    bool removed = false;
    on(t0(), [&] { unregister_bdev("A", [&](Result<void> r) { removed = r.ok(); }); });
    ASSERT_TRUE(poll_until([&] { return removed; })) << "the raid never let go of the removed member";
    const uint64_t w = l1.writes_ok;
    ASSERT_TRUE(poll_until([&] { return l1.writes_ok > w + 500; }));
    close_load(threads[1], l1);
    EXPECT_EQ(l1.writes_failed, 0u);
    EXPECT_EQ(l1.reads_failed, 0u);
    EXPECT_EQ(l1.miscompares, 0u);
    EXPECT_EQ(raid("Mirror")["num_base_bdevs_operational"], 1);
    check_model(l1, read_all("Mirror"), 0, 512);
}

TEST_F(RaidTest, RebuildOntoReplacementUnderLoadThenOriginalRemoved) {
    const uint64_t blocks = 16384;  // 8 MiB: 32 rebuild chunks
    make_malloc("A", blocks);
    make_malloc("B", blocks);
    ASSERT_TRUE(create("Mirror", RaidLevel::raid1, {"A", "B"}, 0).ok());
    Load& l1 = start_load(threads[1], "Mirror", 0, blocks, 16, 64, 41);
    ASSERT_TRUE(poll_until([&] { return l1.writes_ok > 500; }));
    std::optional<Result<void>> res;
    on(t0(), [&] { raid_remove_base_bdev("A", [&](Result<void> r) { res = std::move(r); }); });
    ASSERT_TRUE(poll_until([&] { return res.has_value(); }));
    ASSERT_TRUE(res->ok()) << res->error().message();
    EXPECT_EQ(raid("Mirror")["num_base_bdevs_operational"], 1);
    make_malloc("C", blocks + 100);
    Result<void> add;
    on(t0(), [&] { add = raid_add_base_bdev("Mirror", "C"); });
    ASSERT_TRUE(add.ok()) << add.error().message();
    json during = raid("Mirror");
    ASSERT_TRUE(during.contains("process")) << during.dump();
    EXPECT_EQ(during["process"]["type"], "rebuild");
    EXPECT_EQ(during["process"]["target"], "C");
    bool saw_progress = false;
    ASSERT_TRUE(poll_until([&] {
        json j = raid("Mirror");
        if (j.contains("process") && j["process"]["progress"]["blocks"].get<uint64_t>() > 0) saw_progress = true;
        return !j.contains("process");
    }, 120ull * 1'000'000'000));
    EXPECT_TRUE(saw_progress);
    json after = raid("Mirror");
    EXPECT_EQ(after["num_base_bdevs_operational"], 2) << after.dump();
    // The original goes; the replacement alone must hold every acknowledged block.
    res.reset();
    on(t0(), [&] { raid_remove_base_bdev("B", [&](Result<void> r) { res = std::move(r); }); });
    ASSERT_TRUE(poll_until([&] { return res.has_value(); }));
    ASSERT_TRUE(res->ok()) << res->error().message();
    const uint64_t w = l1.writes_ok;
    ASSERT_TRUE(poll_until([&] { return l1.writes_ok > w + 200; }));
    close_load(threads[1], l1);
    EXPECT_EQ(l1.writes_failed, 0u);
    EXPECT_EQ(l1.reads_failed, 0u);
    EXPECT_EQ(l1.miscompares, 0u);
    EXPECT_EQ(raid("Mirror")["state"], "online");
    auto data = read_all("Mirror");
    check_model(l1, data, 0, 512);
    auto c = read_all("C");
    check_model(l1, c, 0, 512);
}

TEST_F(RaidTest, ConfiguringUntilMembersAppearInAnyOrder) {
    make_malloc("Late1", 256);
    ASSERT_TRUE(create("Cfg", RaidLevel::raid0, {"Late0", "Late1"}, 4).ok());
    json j = raid("Cfg");
    EXPECT_EQ(j["state"], "configuring");
    EXPECT_EQ(j["num_base_bdevs_discovered"], 1);
    EXPECT_EQ(find("Cfg"), nullptr);
    json listed;
    on(t0(), [&] { listed = *raid_get_bdevs("configuring"); });
    EXPECT_EQ(listed.size(), 1u);
    make_malloc("Late0", 256);
    EXPECT_EQ(raid("Cfg")["state"], "online");
    ASSERT_NE(find("Cfg"), nullptr);
    EXPECT_EQ(find("Cfg")->num_blocks(), 512u);
    // save_config entries rebuild it (bdev_raid_create comes before the members' entries).
    json methods = json::array();
    on(t0(), [&] { kRaidModule.write_config(methods); });
    // SPDK's order: the module's options first, then the raids.
    ASSERT_EQ(methods.size(), 2u);
    EXPECT_EQ(methods[0]["method"], "bdev_raid_set_options");
    EXPECT_EQ(methods[0]["params"]["process_window_size_kb"], kRaidDefaultProcessWindowKb);
    EXPECT_EQ(methods[1]["method"], "bdev_raid_create");
    EXPECT_EQ(methods[1]["params"]["raid_level"], "raid0");
    EXPECT_EQ(methods[1]["params"]["strip_size_kb"], 4);
    EXPECT_EQ(methods[1]["params"]["base_bdevs"], json({"Late0", "Late1"}));
    EXPECT_EQ(methods[1]["params"]["uuid"], find("Cfg")->uuid());
    // raid0 losing a member goes offline.
    bool gone = false;
    on(t0(), [&] { unregister_bdev("Late0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return gone; }));
    EXPECT_EQ(raid("Cfg")["state"], "offline");
    EXPECT_EQ(find("Cfg"), nullptr);
    EXPECT_EQ(find("Late1")->claimed_by(), std::string());
}

TEST_F(RaidTest, ControlErrorsAreClear) {
    make_malloc("E0", 256);
    make_malloc("E1", 256);
    make_malloc("E4k", 64, 4096);
    auto code = [&](RaidCreateOptions o) {
        Result<void> r;
        on(t0(), [&] { r = raid_create(o); });
        return r.code();
    };
    EXPECT_EQ(code({"X", RaidLevel::raid0, {"E0", "E1"}, 3, {}, false}), Errc::invalid_argument);  // strip
    EXPECT_EQ(code({"X", RaidLevel::raid0, {"E0", "E1"}, 0, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(code({"X", RaidLevel::raid1, {"E0", "E1"}, 64, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(code({"X", RaidLevel::raid1, {"E0"}, 0, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(code({"X", RaidLevel::raid0, {}, 4, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(code({"X", RaidLevel::raid0, {"E0", "E0"}, 4, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(code({"X", RaidLevel::raid0, {"E0", "X"}, 4, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(code({"X", RaidLevel::raid0, {"E0", "E1"}, 4, {}, true}), Errc::not_supported);
    EXPECT_EQ(code({"E0", RaidLevel::raid0, {"E1"}, 4, {}, false}), Errc::already_exists);
    EXPECT_EQ(code({"X", RaidLevel::raid0, {"E0", "E4k"}, 4, {}, false}), Errc::invalid_argument);
    EXPECT_EQ(find("X"), nullptr);
    EXPECT_EQ(find("E0")->claimed_by(), std::string()) << "a failed create releases its members";
    ASSERT_TRUE(create("Ok", RaidLevel::raid1, {"E0", "E1"}, 0).ok());
    EXPECT_EQ(code({"Y", RaidLevel::raid0, {"E0"}, 4, {}, false}), Errc::already_exists);
    EXPECT_EQ(code({"Ok", RaidLevel::raid0, {"Q"}, 4, {}, false}), Errc::already_exists);
    Result<void> r;
    on(t0(), [&] { r = raid_add_base_bdev("Ok", "E4k"); });
    EXPECT_EQ(r.code(), Errc::invalid_argument) << "no empty slot";
    on(t0(), [&] { r = raid_add_base_bdev("Nope", "E4k"); });
    EXPECT_EQ(r.code(), Errc::not_found);
    on(t0(), [&] { r = raid_add_base_bdev("Ok", "Nope"); });
    EXPECT_EQ(r.code(), Errc::not_found);
    std::optional<Result<void>> del;
    on(t0(), [&] { raid_remove_base_bdev("Nope", [&](Result<void> x) { del = std::move(x); }); });
    ASSERT_TRUE(del.has_value());
    EXPECT_EQ(del->code(), Errc::not_found);
    del.reset();
    on(t0(), [&] { raid_delete("Nope", [&](Result<void> x) { del = std::move(x); }); });
    ASSERT_TRUE(del.has_value());
    EXPECT_EQ(del->code(), Errc::not_found);
    on(t0(), [&] { EXPECT_EQ(raid_get_bdevs("bogus").code(), Errc::invalid_argument); });
    EXPECT_EQ(parse_raid_level("raid5f").code(), Errc::not_supported);
    EXPECT_EQ(parse_raid_level("raid6").code(), Errc::invalid_argument);
    EXPECT_EQ(*parse_raid_level("1"), RaidLevel::raid1);
    // Case-insensitive, as SPDK's strcasecmp.
    EXPECT_EQ(*parse_raid_level("RAID1"), RaidLevel::raid1);
    EXPECT_EQ(*parse_raid_level("Concat"), RaidLevel::concat);
    EXPECT_EQ(*parse_raid_level("Raid0"), RaidLevel::raid0);
    // Delete releases the members and the name.
    del.reset();
    on(t0(), [&] { raid_delete("Ok", [&](Result<void> x) { del = std::move(x); }); });
    ASSERT_TRUE(poll_until([&] { return del.has_value(); }));
    EXPECT_TRUE(del->ok());
    EXPECT_EQ(find("Ok"), nullptr);
    EXPECT_EQ(find("E0")->claimed_by(), std::string());
}

}  // namespace
}  // namespace strata::bdev
