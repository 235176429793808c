// The bdev layer and its modules keep their state per Host (one App): two simulated Apps in one
// process create bdevs of the same names with every module and never see each other's, and shut
// down in either order. UUIDs are random per creation but replay with the seed; the simulator's
// event hash covers what each completed I/O returned.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/bdev/bdev.h>
#include <strata/bdev/io_fixture.h>
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::bdev {
namespace {

using Json = nlohmann::json;

using testing::Done;

// One simulated App with every module, and a worker Thread of its Host for I/O.
class World {
public:
    explicit World(uint64_t seed) {
        sim = std::make_unique<runtime::SimScheduler>(seed, 2);
        app = std::make_unique<rpc::App>(*sim);
        stack::register_all_modules(*app);
        worker = sim->create_thread("worker", 1, &app->host());
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        EXPECT_TRUE(run_until([&] { return started.has_value(); }));
        EXPECT_TRUE(started && started->ok());
    }
    ~World() { stop(); }

    void stop() {
        if (!app) return;
        close();
        app->request_stop();
        EXPECT_TRUE(run_until([&] { return app->stopped(); }));
        {
            runtime::HostScope scope(app->host());
            EXPECT_TRUE(bdev::list().empty());
        }
        app.reset();  // and its Host, with every module's state
        sim.reset();
    }

    bool run_until(const std::function<bool()>& pred) {
        return sim->run_until(pred, sim->now_ns() + 30'000'000'000ull);
    }
    template <class F>
    void on_worker(F&& fn) {
        bool done = false;
        ASSERT_TRUE(worker->post([&] {
                         fn();
                         done = true;
                     }).ok());
        ASSERT_TRUE(run_until([&] { return done; }));
    }

    Json call(const std::string& method, Json params = Json::object()) {
        Json r = app->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }
    void settle() { sim->run_until([] { return false; }, sim->now_ns() + 10'000'000); }

    // The registry as this App sees it: names and UUIDs.
    std::vector<std::string> names() {
        runtime::HostScope scope(app->host());
        std::vector<std::string> out;
        for (Bdev* b : bdev::list()) out.push_back(b->name());
        return out;
    }
    std::string uuid(const std::string& name) {
        runtime::HostScope scope(app->host());
        Bdev* b = bdev::find(name);
        EXPECT_NE(b, nullptr) << name;
        return b != nullptr ? b->uuid() : std::string();
    }

    // One bdev open on the worker, one I/O at a time.
    void open(const std::string& name) {
        close();
        on_worker([&] {
            auto d = bdev::open(name, true, {});
            ASSERT_TRUE(d.ok()) << d.error().message();
            desc = std::move(*d);
            ch = desc->get_channel();
            ASSERT_NE(ch, nullptr);
        });
    }
    void close() {
        if (!desc) return;
        on_worker([&] {
            put_channel(ch);
            ch = nullptr;
            desc.reset();
        });
    }
    IoStatus io(bool is_write, std::vector<uint8_t>& buf, uint64_t offset_blocks) {
        Done d;
        const uint64_t n = buf.size() / desc->bdev().block_size();
        on_worker([&] {
            Status s = is_write ? write(*desc, *ch, buf.data(), offset_blocks, n, &Done::cb, &d)
                                : read(*desc, *ch, buf.data(), offset_blocks, n, &Done::cb, &d);
            ASSERT_TRUE(s.ok()) << s.to_string();
        });
        EXPECT_TRUE(run_until([&] { return d.calls > 0; }));
        return d.status;
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
    runtime::Thread* worker = nullptr;
    std::unique_ptr<Desc> desc;
    Channel* ch = nullptr;
};

void malloc_bdev(World& w, const std::string& name) {
    w.call("bdev_malloc_create", {{"name", name}, {"num_blocks", 4096}, {"block_size", 512}});
}

// Every module: malloc, null, split, raid, error, delay, passthru, under the same names.
void create_all(World& w) {
    for (const char* m : {"M0", "M1", "M2", "M3", "M4", "M5", "M6"}) malloc_bdev(w, m);
    w.call("bdev_null_create", {{"name", "N0"}, {"num_blocks", 1024}, {"block_size", 512}});
    w.call("bdev_split_create", {{"base_bdev", "M1"}, {"split_count", 2}});
    w.call("bdev_raid_create", {{"name", "R0"}, {"raid_level", "raid0"},
                                {"base_bdevs", {"M2", "M3"}}, {"strip_size_kb", 4}});
    w.call("bdev_error_create", {{"base_name", "M4"}});
    w.call("bdev_delay_create", {{"base_bdev_name", "M5"}, {"name", "D0"},
                                 {"avg_read_latency", 1}, {"p99_read_latency", 2},
                                 {"avg_write_latency", 1}, {"p99_write_latency", 2}});
    w.call("bdev_passthru_create", {{"base_bdev_name", "M6"}, {"name", "P0"}});
    w.settle();
}

const std::vector<std::string> kAll = {"D0",   "EE_M4", "M0", "M1", "M1p0", "M1p1", "M2", "M3",
                                       "M4",   "M5",    "M6", "N0", "P0",   "R0"};

class BdevHostsTest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(env::init().ok()); }
    void TearDown() override {
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }
};

class BdevHostsOrderTest : public BdevHostsTest, public ::testing::WithParamInterface<bool> {};

TEST_P(BdevHostsOrderTest, SameNamesSideBySideAndEitherTeardownOrder) {
    auto a = std::make_unique<World>(11);
    auto b = std::make_unique<World>(12);
    create_all(*a);
    create_all(*b);
    EXPECT_EQ(a->names(), kAll);
    EXPECT_EQ(b->names(), kAll);
    for (const auto& n : kAll) EXPECT_NE(a->uuid(n), b->uuid(n)) << n;

    // What one App does, the other does not see: a bdev of its own, a delete, data.
    a->call("bdev_null_create", {{"name", "only_a"}, {"num_blocks", 8}, {"block_size", 512}});
    b->call("bdev_malloc_delete", {{"name", "M0"}});
    b->settle();
    auto an = a->names(), bn = b->names();
    EXPECT_EQ(std::count(an.begin(), an.end(), "only_a"), 1);
    EXPECT_EQ(std::count(bn.begin(), bn.end(), "only_a"), 0);
    EXPECT_EQ(std::count(bn.begin(), bn.end(), "M0"), 0);
    EXPECT_EQ(a->uuid("M0").empty(), false);
    const Json ra = a->call("bdev_raid_get_bdevs", {{"category", "all"}});
    const Json rb = b->call("bdev_raid_get_bdevs", {{"category", "all"}});
    EXPECT_EQ(ra.size(), 1u);
    EXPECT_EQ(rb.size(), 1u);

    std::vector<uint8_t> w(4096, 0xA5), r(4096, 0);
    for (const char* name : {"P0", "R0", "D0", "M1p1", "EE_M4"}) {
        a->open(name);
        ASSERT_TRUE(a->io(true, w, 8).ok()) << name;
        b->open(name);
        ASSERT_TRUE(b->io(false, r, 8).ok()) << name;
        EXPECT_EQ(std::count(r.begin(), r.end(), 0), 4096) << name << ": B read A's data";
        ASSERT_TRUE(a->io(false, r, 8).ok()) << name;
        EXPECT_EQ(r, w) << name;
        std::fill(r.begin(), r.end(), 0);
        a->close();
        b->close();
    }

    // Configs are each App's own.
    auto count = [](const Json& cfg, const std::string& method) {
        size_t n = 0;
        for (const auto& s : cfg["subsystems"])
            for (const auto& e : s["config"]) n += e["method"] == method;
        return n;
    };
    const Json ca = a->call("save_config"), cb = b->call("save_config");
    EXPECT_EQ(count(ca, "bdev_null_create"), 2u);
    EXPECT_EQ(count(cb, "bdev_null_create"), 1u);
    EXPECT_EQ(count(ca, "bdev_passthru_create"), 1u);
    EXPECT_EQ(count(cb, "bdev_passthru_create"), 1u);

    if (GetParam()) {
        a.reset();
        EXPECT_EQ(b->names().size(), kAll.size() - 1);  // untouched by A's teardown
        b.reset();
    } else {
        b.reset();
        EXPECT_EQ(a->names().size(), kAll.size() + 1);
        a.reset();
    }
}

INSTANTIATE_TEST_SUITE_P(Order, BdevHostsOrderTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "AFirst" : "BFirst"; });

// ---- UUIDs ----------------------------------------------------------------------------------

bool is_v4_uuid(const std::string& u) {
    if (u.size() != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-')
        return false;
    return u[14] == '4' && std::string("89ab").find(u[19]) != std::string::npos;
}

std::vector<std::string> uuids_of_a_run(uint64_t seed) {
    World w(seed);
    malloc_bdev(w, "M0");
    malloc_bdev(w, "M1");
    w.call("bdev_passthru_create", {{"base_bdev_name", "M0"}, {"name", "P0"}});
    std::vector<std::string> out = {w.uuid("M0"), w.uuid("M1"), w.uuid("P0")};
    w.call("bdev_malloc_delete", {{"name", "M1"}});
    malloc_bdev(w, "M1");  // the same name again: a new bdev, a new UUID
    out.push_back(w.uuid("M1"));
    return out;
}

// World registers its modules outside any Host scope, as the fuzzers and tools do: the modules'
// tables (examine) must still land in the App's Host, or a split created before its base is
// never examined into being (strata-tgt once lost exactly this).
TEST_F(BdevHostsTest, ModulesRegisteredFromOutsideTheHostExamineInTheAppsHost) {
    World a(31);
    World b(32);
    for (World* w : {&a, &b}) {
        w->call("bdev_split_create", {{"base_bdev", "M9"}, {"split_count", 2}});
        malloc_bdev(*w, "M9");
        w->settle();
    }
    for (World* w : {&a, &b}) {
        const auto names = w->names();
        EXPECT_NE(std::find(names.begin(), names.end(), "M9p1"), names.end());
    }
}

TEST_F(BdevHostsTest, UuidsAreRandomPerCreationAndReplayWithTheSeed) {
    const auto a = uuids_of_a_run(21);
    for (const auto& u : a) EXPECT_TRUE(is_v4_uuid(u)) << u;
    EXPECT_EQ(std::set<std::string>(a.begin(), a.end()).size(), a.size()) << "a repeated UUID";
    EXPECT_EQ(uuids_of_a_run(21), a) << "the same seed must replay the same UUIDs";
    const auto c = uuids_of_a_run(22);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(c[i], a[i]) << i;
}

// ---- the event hash -------------------------------------------------------------------------

struct Trace {
    uint64_t hash;
    uint64_t events;
};

// Writes `data` to a malloc bdev and reads it back, on a fresh World.
Trace trace_of_a_run(uint64_t seed, uint8_t changed_byte) {
    World w(seed);
    malloc_bdev(w, "M0");
    w.open("M0");
    std::vector<uint8_t> data(8192);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
    data[1234] ^= changed_byte;
    std::vector<uint8_t> back(data.size());
    EXPECT_TRUE(w.io(true, data, 16).ok());
    EXPECT_TRUE(w.io(false, back, 16).ok());
    EXPECT_EQ(back, data);
    w.close();
    return {w.sim->event_hash(), w.sim->event_count()};
}

TEST_F(BdevHostsTest, EventHashCoversWhatReadsReturned) {
    const Trace a = trace_of_a_run(31, 0);
    EXPECT_GE(a.events, 2u);  // at least the write and the read
    const Trace again = trace_of_a_run(31, 0);
    EXPECT_EQ(again.hash, a.hash) << "same seed, same work: same event hash";
    EXPECT_EQ(again.events, a.events);
    const Trace changed = trace_of_a_run(31, 0x10);
    EXPECT_EQ(changed.events, a.events);
    EXPECT_NE(changed.hash, a.hash) << "one byte read back differs: the hash must see it";
}

}  // namespace
}  // namespace strata::bdev
