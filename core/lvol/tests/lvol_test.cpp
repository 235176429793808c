// Lvstores and lvols through their RPCs on a simulated App over malloc bases: create/load
// (unload and re-examine through a passthru), every RPC and its errors, snapshot/clone data,
// thin vs thick allocation, rename persistence, and a verify workload through the lvol bdev.
#include <gtest/gtest.h>

#include <strata/lvol/lvol.h>
#include <strata/stack/sim_apps.h>
#include <strata/runtime/host.h>

#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

class LvolTest : public VbdevTest {
protected:
    // 32 MiB base, 1 MiB clusters.
    std::string lvstore(const std::string& bdev = "Malloc0", const std::string& name = "lvs0") {
        if (!exists(bdev)) malloc(bdev, 65536, 512);
        Json u = call("bdev_lvol_create_lvstore",
                      {{"bdev_name", bdev}, {"lvs_name", name}, {"cluster_sz", 1 << 20}});
        return u.is_string() ? u.get<std::string>() : "";
    }
    std::string lvol(const std::string& name, uint64_t mib, bool thin = false,
                     const std::string& lvs = "lvs0") {
        Json u = call("bdev_lvol_create", {{"lvol_name", name},
                                           {"size_in_mib", mib},
                                           {"thin_provision", thin},
                                           {"lvs_name", lvs}});
        return u.is_string() ? u.get<std::string>() : "";
    }
    Json lvol_info(const std::string& bdev) {
        Json b = call("bdev_get_bdevs", {{"name", bdev}});
        return b.is_array() && !b.empty() ? b[0]["driver_specific"]["lvol"] : Json();
    }
    // Unloads every store (as at shutdown) and brings the base back under a passthru: the
    // passthru's registration runs examine, which must find the store.
    void reexamine(const std::string& base = "Malloc0", const std::string& pt = "PT0") {
        bool done = false;
        runtime::spawn(app->thread(), lvol::unload_all(), [&] { done = true; });
        ASSERT_TRUE(poll_until([&] { return done; }));
        call("bdev_passthru_create", {{"base_bdev_name", base}, {"name", pt}});
        // The load examine started is asynchronous; bdev_wait_for_examine waits for it.
        EXPECT_EQ(call("bdev_wait_for_examine"), true);
    }
};

TEST_F(LvolTest, CreateLvstoreAndLvols) {
    const std::string uuid = lvstore();
    ASSERT_EQ(uuid.size(), 36u);
    EXPECT_STREQ(find("Malloc0")->claimed_by(), "lvol");
    Json stores = call("bdev_lvol_get_lvstores");
    ASSERT_EQ(stores.size(), 1u);
    EXPECT_EQ(stores[0]["name"], "lvs0");
    EXPECT_EQ(stores[0]["uuid"], uuid);
    EXPECT_EQ(stores[0]["base_bdev"], "Malloc0");
    EXPECT_EQ(stores[0]["cluster_size"], 1 << 20);
    EXPECT_EQ(stores[0]["block_size"], 512);
    const uint64_t total = stores[0]["total_data_clusters"];
    EXPECT_GT(total, 20u);
    EXPECT_EQ(stores[0]["free_clusters"], total);

    const std::string thick = lvol("thick", 4);
    const std::string thin = lvol("thin", 8, true);
    EXPECT_TRUE(exists(thick));
    EXPECT_TRUE(exists("lvs0/thick"));
    EXPECT_TRUE(exists("lvs0/thin"));
    Json b = call("bdev_get_bdevs", {{"name", "lvs0/thick"}})[0];
    EXPECT_EQ(b["name"], thick);
    EXPECT_EQ(b["num_blocks"], 4 * 2048);
    EXPECT_EQ(b["product_name"], "Logical Volume");
    EXPECT_EQ(b["driver_specific"]["lvol"]["lvol_store_uuid"], uuid);
    EXPECT_EQ(b["driver_specific"]["lvol"]["base_bdev"], "Malloc0");
    EXPECT_EQ(b["driver_specific"]["lvol"]["thin_provision"], false);
    EXPECT_EQ(b["driver_specific"]["lvol"]["num_allocated_clusters"], 4);
    EXPECT_EQ(lvol_info(thin)["thin_provision"], true);
    EXPECT_EQ(lvol_info(thin)["num_allocated_clusters"], 0);
    EXPECT_EQ(call("bdev_lvol_get_lvstores", {{"lvs_name", "lvs0"}})[0]["free_clusters"], total - 4);

    // Thin: a write allocates exactly the clusters it touches.
    Handle& h = open("lvs0/thin");
    ASSERT_TRUE(write_blocks(h, 0, pattern(4096, 1)).ok());
    ASSERT_TRUE(write_blocks(h, 5 * 2048 + 8, pattern(4096, 2)).ok());
    EXPECT_EQ(lvol_info(thin)["num_allocated_clusters"], 2);
    std::vector<uint8_t> r(4096);
    ASSERT_TRUE(read_blocks(h, 3 * 2048, r).ok());
    EXPECT_EQ(r, std::vector<uint8_t>(4096, 0));

    Json lvols = call("bdev_lvol_get_lvols", {{"lvs_name", "lvs0"}});
    ASSERT_EQ(lvols.size(), 2u);
    EXPECT_EQ(lvols[0]["lvs"]["uuid"], uuid);
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "Malloc0"}})[0]["claimed"], true);
}

TEST_F(LvolTest, VerifyWorkloadThroughTheLvolBdev) {
    lvstore();
    lvol("thick", 8);
    lvol("thin", 8, true);
    for (const char* n : {"lvs0/thick", "lvs0/thin"}) {
        Handle& h = open(n);
        verify_workload(h, 64);
        EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return write_zeroes(*h.desc, *h.ch, 100, 4, f, c); }).ok());
        EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 200, 8, f, c); }).ok());
        EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return flush(*h.desc, *h.ch, 0, 8, f, c); }).ok());
        EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*h.desc, *h.ch, f, c); }).ok());
        std::vector<uint8_t> r(2048);
        ASSERT_TRUE(read_blocks(h, 100, r).ok());
        EXPECT_EQ(r, std::vector<uint8_t>(2048, 0));
    }
    // More I/O in flight than a blob channel has requests: the excess waits, none fails.
    Handle& h = open("lvs0/thick");
    constexpr int kIos = 600;
    auto buf = pattern(size_t{kIos} * 512, 5);
    std::vector<Done> done(kIos);
    on(worker, [&] {
        for (int i = 0; i < kIos; ++i)
            ASSERT_TRUE(write(*h.desc, *h.ch, buf.data() + size_t(i) * 512, uint64_t(i), 1,
                              &Done::cb, &done[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    for (auto& d : done) ASSERT_TRUE(d.status.ok());
    std::vector<uint8_t> r(buf.size());
    ASSERT_TRUE(read_blocks(h, 0, r).ok());
    EXPECT_EQ(r, buf);
}

TEST_F(LvolTest, ManyIovecsAreSplitToTheBlobsLimit) {
    // A blob request takes at most blob::kMaxIoVecs iovecs; the lvol bdev says so and the bdev
    // layer splits (libiscsi's 32 MiB WRITE16 arrives here as 256 iovecs).
    lvstore();
    lvol("thin", 8, true);
    Handle& h = open("lvs0/thin");
    constexpr int kIovs = 100;
    auto data = pattern(size_t{kIovs} * 1024, 9);
    std::vector<iovec> iov(kIovs);
    for (int i = 0; i < kIovs; ++i) iov[i] = {data.data() + size_t(i) * 1024, 1024};
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) {
                    return writev(*h.desc, *h.ch, iov.data(), kIovs, 10, kIovs * 2, f, c);
                }).ok());
    std::vector<uint8_t> back(data.size());
    std::vector<iovec> riov(kIovs);
    for (int i = 0; i < kIovs; ++i) riov[i] = {back.data() + size_t(i) * 1024, 1024};
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) {
                    return readv(*h.desc, *h.ch, riov.data(), kIovs, 10, kIovs * 2, f, c);
                }).ok());
    EXPECT_EQ(back, data);
}

TEST_F(LvolTest, SnapshotAndCloneData) {
    lvstore();
    lvol("vol", 4, true);
    Handle& v = open("lvs0/vol");
    auto a = pattern(8192, 1);
    ASSERT_TRUE(write_blocks(v, 0, a).ok());
    const std::string snap = call("bdev_lvol_snapshot", {{"lvol_name", "lvs0/vol"}, {"snapshot_name", "snap"}});
    EXPECT_TRUE(exists("lvs0/snap"));
    EXPECT_EQ(lvol_info(snap)["snapshot"], true);
    EXPECT_EQ(lvol_info("lvs0/vol")["clone"], true);
    EXPECT_EQ(lvol_info("lvs0/vol")["base_snapshot"], "snap");
    const std::string clone = call("bdev_lvol_clone", {{"snapshot_name", "lvs0/snap"}, {"clone_name", "cl"}});
    EXPECT_EQ(lvol_info(snap)["clones"], Json({"vol", "cl"}));
    EXPECT_EQ(lvol_info(clone)["num_allocated_clusters"], 0);

    // Writes to the clone and to the origin change neither the snapshot nor each other.
    Handle& c = open("lvs0/cl");
    auto b = pattern(4096, 2);
    ASSERT_TRUE(write_blocks(c, 4, b).ok());
    auto d = pattern(4096, 3);
    ASSERT_TRUE(write_blocks(v, 8, d).ok());
    Handle& s = open("lvs0/snap");
    std::vector<uint8_t> r(8192);
    ASSERT_TRUE(read_blocks(s, 0, r).ok());
    EXPECT_EQ(r, a);
    ASSERT_TRUE(read_blocks(c, 0, r).ok());
    auto expect_c = a;
    std::copy(b.begin(), b.end(), expect_c.begin() + 4 * 512);
    EXPECT_EQ(r, expect_c);
    ASSERT_TRUE(read_blocks(v, 0, r).ok());
    auto expect_v = a;
    std::copy(d.begin(), d.end(), expect_v.begin() + 8 * 512);
    EXPECT_EQ(r, expect_v);
    // The snapshot refuses writes.
    EXPECT_EQ(write_blocks(s, 0, b).code, Errc::permission_denied);

    // Snapshot with two clones: delete refused; inflate one, then the delete merges.
    Json e = call_error("bdev_lvol_delete", {{"name", "lvs0/snap"}});
    EXPECT_EQ(e["code"], -EPERM);
    EXPECT_NE(e["message"].get<std::string>().find("2 clones"), std::string::npos);
    EXPECT_EQ(call("bdev_lvol_inflate", {{"name", "lvs0/cl"}}), true);
    EXPECT_EQ(lvol_info(clone)["clone"], false);
    EXPECT_EQ(lvol_info(clone)["num_allocated_clusters"], 4);
    ASSERT_TRUE(read_blocks(c, 0, r).ok());
    EXPECT_EQ(r, expect_c);
    close(s);
    EXPECT_EQ(call("bdev_lvol_delete", {{"name", "lvs0/snap"}}), true);
    EXPECT_FALSE(exists("lvs0/snap"));
    EXPECT_EQ(lvol_info("lvs0/vol")["clone"], false);
    ASSERT_TRUE(read_blocks(v, 0, r).ok());
    EXPECT_EQ(r, expect_v);
}

TEST_F(LvolTest, DecoupleParent) {
    lvstore();
    lvol("vol", 2, true);
    Handle& v = open("lvs0/vol");
    auto a = pattern(4096, 7);
    ASSERT_TRUE(write_blocks(v, 0, a).ok());
    call("bdev_lvol_snapshot", {{"lvol_name", "lvs0/vol"}, {"snapshot_name", "s1"}});
    call("bdev_lvol_snapshot", {{"lvol_name", "lvs0/vol"}, {"snapshot_name", "s2"}});
    EXPECT_EQ(lvol_info("lvs0/vol")["base_snapshot"], "s2");
    EXPECT_EQ(call("bdev_lvol_decouple_parent", {{"name", "lvs0/vol"}}), true);
    EXPECT_EQ(lvol_info("lvs0/vol")["base_snapshot"], "s1");
    std::vector<uint8_t> r(4096);
    ASSERT_TRUE(read_blocks(v, 0, r).ok());
    EXPECT_EQ(r, a);
    EXPECT_EQ(call_error("bdev_lvol_inflate", {{"name", "lvs0/s1"}})["code"], -EINVAL);
}

TEST_F(LvolTest, ResizeRenameReadOnly) {
    lvstore();
    const std::string u = lvol("vol", 2);
    Handle& h = open("lvs0/vol");
    EXPECT_EQ(call("bdev_lvol_resize", {{"name", "lvs0/vol"}, {"size_in_mib", 5}}), true);
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", u}})[0]["num_blocks"], 5 * 2048);
    ASSERT_TRUE(poll_until([&] { return !h.events.empty(); }));
    EXPECT_EQ(h.events[0], Event::resize);
    ASSERT_TRUE(write_blocks(h, 5 * 2048 - 8, pattern(4096, 1)).ok());
    EXPECT_EQ(lvol_info(u)["num_allocated_clusters"], 5);
    EXPECT_EQ(call_error("bdev_lvol_resize", {{"name", "lvs0/vol"}, {"size_in_mib", 4096}})["code"], -ENOSPC);

    EXPECT_EQ(call("bdev_lvol_rename", {{"old_name", "lvs0/vol"}, {"new_name", "data"}}), true);
    EXPECT_EQ(call("bdev_lvol_get_lvols")[0]["alias"], "lvs0/data");
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "lvs0/data"}})[0]["aliases"], Json({"lvs0/data"}));
    EXPECT_FALSE(exists("lvs0/vol"));
    EXPECT_EQ(call("bdev_lvol_rename_lvstore", {{"old_name", "lvs0"}, {"new_name", "store"}}), true);
    EXPECT_EQ(call("bdev_lvol_get_lvols")[0]["alias"], "store/data");
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "store/data"}})[0]["name"], u);
    EXPECT_FALSE(exists("lvs0/data"));
    // The device stays open through renames.
    ASSERT_TRUE(write_blocks(h, 0, pattern(512, 1)).ok());

    EXPECT_EQ(call("bdev_lvol_set_read_only", {{"name", u}}), true);
    EXPECT_EQ(write_blocks(h, 0, pattern(512, 1)).code, Errc::permission_denied);
}

TEST_F(LvolTest, StoreComesBackThroughExamine) {
    const std::string uuid = lvstore();
    const std::string thick = lvol("thick", 3);
    lvol("thin", 6, true);
    {
        Handle& h = open("lvs0/thin");
        ASSERT_TRUE(write_blocks(h, 2048, pattern(8192, 4)).ok());
        close(h);
    }
    call("bdev_lvol_snapshot", {{"lvol_name", "lvs0/thin"}, {"snapshot_name", "snap"}});
    call("bdev_lvol_rename", {{"old_name", "lvs0/thick"}, {"new_name", "renamed"}});
    call("bdev_lvol_rename_lvstore", {{"old_name", "lvs0"}, {"new_name", "lvsX"}});

    reexamine();
    EXPECT_STREQ(find("PT0")->claimed_by(), "lvol");
    Json stores = call("bdev_lvol_get_lvstores");
    ASSERT_EQ(stores.size(), 1u);
    EXPECT_EQ(stores[0]["name"], "lvsX");
    EXPECT_EQ(stores[0]["uuid"], uuid);
    EXPECT_EQ(stores[0]["base_bdev"], "PT0");
    EXPECT_TRUE(exists("lvsX/renamed"));
    EXPECT_TRUE(exists(thick));  // same UUID, same bdev name
    EXPECT_TRUE(exists("lvsX/snap"));
    EXPECT_EQ(lvol_info("lvsX/thin")["base_snapshot"], "snap");
    EXPECT_EQ(lvol_info("lvsX/thin")["thin_provision"], true);
    EXPECT_EQ(lvol_info("lvsX/snap")["num_allocated_clusters"], 1);
    Handle& h = open("lvsX/thin");
    std::vector<uint8_t> r(8192);
    ASSERT_TRUE(read_blocks(h, 2048, r).ok());
    EXPECT_EQ(r, pattern(8192, 4));
    // save_config holds nothing of the lvols: they are on-disk state.
    EXPECT_EQ(bdev_config().dump().find("lvol"), std::string::npos);
}

TEST_F(LvolTest, DamagedStoreIsReportedNotIgnored) {
    lvstore();
    lvol("v", 2);
    bool unloaded = false;
    runtime::spawn(app->thread(), lvol::unload_all(), [&] { unloaded = true; });
    ASSERT_TRUE(poll_until([&] { return unloaded; }));
    {
        // One flipped byte inside the super block's crc: still "STRATABS" + LVOLSTORE.
        Handle& h = open("Malloc0");
        std::vector<uint8_t> sb(4096);
        ASSERT_TRUE(read_blocks(h, 0, sb).ok());
        sb[200] ^= 0xff;
        ASSERT_TRUE(write_blocks(h, 0, sb).ok());
        close(h);
    }
    std::optional<Result<void>> r;
    runtime::spawn(app->thread(), lvol::load_lvstore("Malloc0"),
                   [&](Result<void> res) { r = std::move(res); });
    ASSERT_TRUE(poll_until([&] { return r.has_value(); }));
    ASSERT_FALSE(r->ok());
    // Damage, not absence: examine logs it rather than treating the bdev as a plain one.
    EXPECT_NE(r->code(), Errc::not_found) << r->error().message();
    EXPECT_NE(r->error().message().find("does not load"), std::string::npos);
    EXPECT_TRUE(call("bdev_lvol_get_lvstores").empty());
}

TEST_F(LvolTest, DeleteLvstore) {
    const std::string uuid = lvstore();
    lvol("a", 2);
    lvol("b", 2, true);
    EXPECT_EQ(call("bdev_lvol_delete_lvstore", {{"uuid", uuid}}), true);
    EXPECT_FALSE(exists("lvs0/a"));
    EXPECT_TRUE(call("bdev_lvol_get_lvstores").empty());
    EXPECT_STREQ(find("Malloc0")->claimed_by(), "");
    // Gone from the disk too: examine of the base finds nothing.
    reexamine();
    EXPECT_TRUE(call("bdev_lvol_get_lvstores").empty());
    EXPECT_STREQ(find("PT0")->claimed_by(), "");
    // The name is free again.
    lvstore("Malloc1", "lvs0");
}

TEST_F(LvolTest, HotRemovalOfTheBaseTakesTheLvols) {
    lvstore();
    lvol("a", 2);
    lvol("b", 2, true);
    Handle& h = open("lvs0/a");
    ASSERT_TRUE(write_blocks(h, 0, pattern(4096, 1)).ok());
    bool gone = false;
    on(&app->thread(), [&] { unregister_bdev("Malloc0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return !h.events.empty(); }));
    EXPECT_EQ(h.events[0], Event::remove);
    close(h);
    ASSERT_TRUE(poll_until([&] { return gone; }));
    EXPECT_TRUE(list().empty());
    EXPECT_TRUE(call("bdev_lvol_get_lvstores").empty());
    // The name is free for a new store.
    lvstore("Malloc1", "lvs0");
}

TEST_F(LvolTest, StoreLeftDirtyByHotRemovalLoadsAgain) {
    malloc("Malloc0", 65536, 512);
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    call("bdev_lvol_create_lvstore", {{"bdev_name", "PT0"}, {"lvs_name", "lvs0"}, {"cluster_sz", 1 << 20}});
    lvol("thin", 4, true);
    const auto data = pattern(8192, 9);
    {
        Handle& h = open("lvs0/thin");
        ASSERT_TRUE(write_blocks(h, 2048, data).ok());
        ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return flush(*h.desc, *h.ch, 0, 8, f, c); }).ok());
        close(h);
    }
    // The passthru goes away under the store: no clean unload.
    call("bdev_passthru_delete", {{"name", "PT0"}});
    ASSERT_TRUE(poll_until([&] { return call("bdev_lvol_get_lvstores").empty(); }));
    EXPECT_FALSE(exists("lvs0/thin"));
    // A new path to the same blocks: examine loads the store dirty and the lvol comes back.
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT1"}});
    EXPECT_EQ(call("bdev_wait_for_examine"), true);
    ASSERT_TRUE(exists("lvs0/thin"));
    EXPECT_EQ(lvol_info("lvs0/thin")["num_allocated_clusters"], 1);
    Handle& h = open("lvs0/thin");
    std::vector<uint8_t> r(8192);
    ASSERT_TRUE(read_blocks(h, 2048, r).ok());
    EXPECT_EQ(r, data);
}

TEST_F(LvolTest, RpcErrors) {
    malloc("Small", 2048, 512);  // 1 MiB
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore", {{"bdev_name", "Nope"}, {"lvs_name", "x"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore", {{"bdev_name", "Small"}, {"lvs_name", "x"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore", {{"bdev_name", "Small"}})["code"], -32602);
    lvstore();
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore",
                         {{"bdev_name", "Malloc0"}, {"lvs_name", "other"}})["code"], -EPERM);
    malloc("Malloc1", 65536, 512);
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore",
                         {{"bdev_name", "Malloc1"}, {"lvs_name", "lvs0"}})["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore",
                         {{"bdev_name", "Malloc1"}, {"lvs_name", std::string(64, 'n')}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore", {{"bdev_name", "Malloc1"}, {"lvs_name", "y"},
                                                      {"clear_method", "shred"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_create_lvstore", {{"bdev_name", "Malloc1"}, {"lvs_name", "y"},
                                                      {"cluster_sz", 1000}})["code"], -EINVAL);
    EXPECT_FALSE(find("Malloc1")->claimed_by()[0]);

    lvol("v", 2);
    EXPECT_EQ(call_error("bdev_lvol_create", {{"lvol_name", "v"}, {"size_in_mib", 1}, {"lvs_name", "lvs0"}})["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_lvol_create", {{"lvol_name", "w"}, {"size_in_mib", 1}, {"lvs_name", "none"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_create", {{"lvol_name", "w"}, {"size_in_mib", 1}})["code"], -32602);
    EXPECT_EQ(call_error("bdev_lvol_create", {{"lvol_name", "w"}, {"size_in_mib", 0}, {"lvs_name", "lvs0"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_create", {{"lvol_name", "big"}, {"size_in_mib", 1024}, {"lvs_name", "lvs0"}})["code"], -ENOSPC);
    // Thin may overcommit the free space (up to the store's size, the blobstore's limit).
    lvol("thinbig", 32, true);
    EXPECT_EQ(call_error("bdev_lvol_create", {{"lvol_name", "huge"}, {"size_in_mib", 1024},
                                              {"thin_provision", true}, {"lvs_name", "lvs0"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_snapshot", {{"lvol_name", "lvs0/none"}, {"snapshot_name", "s"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_snapshot", {{"lvol_name", "lvs0/v"}, {"snapshot_name", "thinbig"}})["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_lvol_clone", {{"snapshot_name", "lvs0/v"}, {"clone_name", "c"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_rename", {{"old_name", "lvs0/v"}, {"new_name", "thinbig"}})["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_lvol_rename_lvstore", {{"old_name", "nope"}, {"new_name", "x"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_delete", {{"name", "lvs0/none"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_delete_lvstore", {{"lvs_name", "none"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_delete_lvstore", Json::object())["code"], -32602);
    EXPECT_EQ(call_error("bdev_lvol_get_lvstores", {{"lvs_name", "none"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_get_lvols", {{"lvs_name", "none"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_grow_lvstore", {{"lvs_name", "none"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_decouple_parent", {{"name", "lvs0/v"}})["code"], -EINVAL);
    // Nothing of the failures is left behind.
    EXPECT_EQ(call("bdev_lvol_get_lvols").size(), 2u);
}

// bdev_lvol_grow_lvstore on a base that grows: the base is itself an lvol (the memory bdevs
// cannot resize; an lvol's resize sends Event::resize like a rescanned LUN).
TEST_F(LvolTest, GrowLvstoreWithItsBase) {
    lvstore();
    const std::string base = lvol("base", 8);
    const std::string inner =
        call("bdev_lvol_create_lvstore",
             {{"bdev_name", "lvs0/base"}, {"lvs_name", "inner"}, {"cluster_sz", 256 << 10}});
    ASSERT_EQ(inner.size(), 36u);
    auto store = [&] { return call("bdev_lvol_get_lvstores", {{"lvs_name", "inner"}})[0]; };
    const uint64_t total0 = store()["total_data_clusters"];
    EXPECT_GT(total0, 20u);
    // The base did not grow: nothing to do, not an error.
    EXPECT_EQ(call("bdev_lvol_grow_lvstore", {{"lvs_name", "inner"}}), true);
    EXPECT_EQ(store()["total_data_clusters"], total0);
    const std::string v = lvol("v", 2, false, "inner");
    Handle& h = open("inner/v");
    const auto data = pattern(8192, 3);
    ASSERT_TRUE(write_blocks(h, 100, data).ok());
    const uint64_t free0 = store()["free_clusters"];

    EXPECT_EQ(call("bdev_lvol_resize", {{"name", "lvs0/base"}, {"size_in_mib", 16}}), true);
    EXPECT_EQ(call("bdev_lvol_grow_lvstore", {{"uuid", inner}}), true);
    EXPECT_EQ(store()["total_data_clusters"], total0 + 32);  // 8 MiB of 256 KiB clusters
    EXPECT_EQ(store()["free_clusters"], free0 + 32);
    std::vector<uint8_t> back(data.size());
    ASSERT_TRUE(read_blocks(h, 100, back).ok());
    EXPECT_EQ(back, data);
    // An lvol larger than the store was before, and it survives a restart (examine again).
    ASSERT_NE(lvol("wide", (total0 + 8) / 4, false, "inner"), "");
    EXPECT_EQ(call("bdev_lvol_get_lvols", {{"lvs_name", "inner"}}).size(), 2u);
    const uint64_t free1 = store()["free_clusters"];
    // Unloaded and loaded again, as a restart would (examine skips lvol bdevs, so it is
    // load_lvstore here).
    close(h);
    bool done = false;
    Result<void> res;
    runtime::spawn(app->thread(), lvol::unload_lvstore({"", "inner"}), [&](Result<void> r) {
        res = r;
        done = true;
    });
    ASSERT_TRUE(poll_until([&] { return done; }));
    ASSERT_TRUE(res.ok()) << res.error().message();
    done = false;
    runtime::spawn(app->thread(), lvol::load_lvstore(base), [&](Result<void> r) {
        res = r;
        done = true;
    });
    ASSERT_TRUE(poll_until([&] { return done; }));
    ASSERT_TRUE(res.ok()) << res.error().message();
    EXPECT_EQ(store()["total_data_clusters"], total0 + 32);
    EXPECT_EQ(store()["free_clusters"], free1);
    Handle& h2 = open("inner/v");
    ASSERT_TRUE(read_blocks(h2, 100, back).ok());
    EXPECT_EQ(back, data);

    // Errors: an unknown store, both or neither of uuid and lvs_name.
    EXPECT_EQ(call_error("bdev_lvol_grow_lvstore", {{"lvs_name", "nope"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_grow_lvstore", {{"lvs_name", "inner"}, {"uuid", inner}})["code"],
              -32602);
    EXPECT_EQ(call_error("bdev_lvol_grow_lvstore")["code"], -32602);
    close(h2);
    // The lvol subsystem's fini then unloads inner before lvs0, whose lvol is inner's base.
}

// Removing an lvol that holds another lvstore (directly, or by deleting its store) unloads the
// upper store first. It used to deadlock: the upper store's removal handler waited for the
// operation lock held by the delete, which waited for the removal (found by fuzz/lvol_rpc).
TEST_F(LvolTest, RemovingTheBaseOfAStackedStoreUnloadsItFirst) {
    lvstore();
    lvol("base", 8);
    ASSERT_EQ(call("bdev_lvol_create_lvstore",
                   {{"bdev_name", "lvs0/base"}, {"lvs_name", "upper"}, {"cluster_sz", 256 << 10}})
                  .get<std::string>()
                  .size(),
              36u);
    lvol("v", 1, false, "upper");
    EXPECT_EQ(call("bdev_lvol_delete", {{"name", "lvs0/base"}}), true);
    EXPECT_EQ(call_error("bdev_lvol_get_lvstores", {{"lvs_name", "upper"}})["code"], -ENOENT);
    EXPECT_EQ(bdev::find("upper/v"), nullptr);

    lvol("base2", 8);
    ASSERT_EQ(call("bdev_lvol_create_lvstore",
                   {{"bdev_name", "lvs0/base2"}, {"lvs_name", "upper2"}, {"cluster_sz", 256 << 10}})
                  .get<std::string>()
                  .size(),
              36u);
    EXPECT_EQ(call("bdev_lvol_delete_lvstore", {{"lvs_name", "lvs0"}}), true);
    EXPECT_EQ(call("bdev_lvol_get_lvstores").size(), 0u);
}

// ---- clear_method, unmap releasing clusters, external snapshot clones ----------------------------

class LvolClearTest : public LvolTest {
protected:
    // Blocks of `bdev` whose every byte is `v` (the whole bdev, read 1 MiB at a time).
    uint64_t blocks_of(const std::string& bdev, uint8_t v) {
        Handle& h = open(bdev, false);
        const uint64_t n = h.desc->bdev().num_blocks();
        const uint32_t bs = h.desc->bdev().block_size();
        uint64_t count = 0;
        std::vector<uint8_t> buf(1 << 20);
        for (uint64_t off = 0; off < n; off += buf.size() / bs) {
            buf.resize(std::min<uint64_t>(1 << 20, (n - off) * bs));
            EXPECT_TRUE(read_blocks(h, off, buf).ok());
            for (size_t b = 0; b < buf.size(); b += bs)
                count += std::all_of(buf.begin() + b, buf.begin() + b + bs, [v](uint8_t c) { return c == v; });
        }
        close(h);
        return count;
    }
    void fill(const std::string& bdev, uint8_t v, uint64_t blocks) {
        Handle& h = open(bdev);
        ASSERT_TRUE(write_blocks(h, 0, std::vector<uint8_t>(blocks * 512, v)).ok());
        close(h);
    }
    std::string lvol_cm(const std::string& name, uint64_t mib, const char* cm, bool thin = false) {
        Json u = call("bdev_lvol_create", {{"lvol_name", name}, {"size_in_mib", mib},
                                           {"thin_provision", thin}, {"lvs_name", "lvs0"},
                                           {"clear_method", cm}});
        return u.is_string() ? u.get<std::string>() : "";
    }
    Json lvol_entry(const std::string& name) {
        for (const Json& l : call("bdev_lvol_get_lvols"))
            if (l["name"] == name) return l;
        return Json();
    }
};

TEST_F(LvolClearTest, LvstoreClearMethodAtCreate) {
    malloc("Malloc1", 65536, 512);
    malloc("Malloc2", 65536, 512);
    fill("Malloc1", 0xd4, 65536);
    fill("Malloc2", 0xd4, 65536);
    ASSERT_EQ(call("bdev_lvol_create_lvstore", {{"bdev_name", "Malloc1"}, {"lvs_name", "keep"},
                                                {"clear_method", "none"}}).get<std::string>().size(), 36u);
    ASSERT_EQ(call("bdev_lvol_create_lvstore", {{"bdev_name", "Malloc2"}, {"lvs_name", "zero"},
                                                {"clear_method", "write_zeroes"}}).get<std::string>().size(), 36u);
    EXPECT_GT(blocks_of("Malloc1", 0xd4), 60000u);  // only the metadata region was written
    EXPECT_EQ(blocks_of("Malloc2", 0xd4), 0u);
}

TEST_F(LvolClearTest, DeleteAndShrinkClearWithTheLvolsMethodAfterARestart) {
    lvstore();
    lvol_cm("wz", 2, "write_zeroes");
    lvol_cm("none", 2, "none");
    lvol_cm("um", 2, "unmap");
    lvol_cm("shrink", 3, "write_zeroes");
    fill("lvs0/wz", 0xa1, 4096);
    fill("lvs0/none", 0xb2, 4096);
    fill("lvs0/um", 0xc3, 4096);
    fill("lvs0/shrink", 0xe5, 6144);
    // The method is kept with the lvol (an xattr): it holds after the store is loaded again.
    reexamine();
    for (uint8_t v : {0xa1, 0xb2, 0xc3}) EXPECT_EQ(blocks_of("Malloc0", v), 4096u) << int(v);
    EXPECT_EQ(blocks_of("Malloc0", 0xe5), 6144u);
    EXPECT_EQ(call("bdev_lvol_delete", {{"name", "lvs0/wz"}}), true);
    EXPECT_EQ(call("bdev_lvol_delete", {{"name", "lvs0/none"}}), true);
    EXPECT_EQ(call("bdev_lvol_delete", {{"name", "lvs0/um"}}), true);
    EXPECT_EQ(blocks_of("Malloc0", 0xa1), 0u);     // zeroed
    EXPECT_EQ(blocks_of("Malloc0", 0xb2), 4096u);  // left as it was
    EXPECT_EQ(blocks_of("Malloc0", 0xc3), 0u);     // unmapped (malloc reads zeroes after)
    EXPECT_EQ(call("bdev_lvol_resize", {{"name", "lvs0/shrink"}, {"size_in_mib", 1}}), true);
    EXPECT_EQ(blocks_of("Malloc0", 0xe5), 2048u);
}

TEST_F(LvolClearTest, UnmapOfAThinLvolReleasesItsClusters) {
    lvstore();
    const std::string u = lvol("thin", 4, true);
    auto free_clusters = [&] { return call("bdev_lvol_get_lvstores")[0]["free_clusters"].get<uint64_t>(); };
    const uint64_t free0 = free_clusters();
    Handle& h = open("lvs0/thin");
    const auto data = pattern(4 * 2048 * 512, 7);
    ASSERT_TRUE(write_blocks(h, 0, data).ok());
    EXPECT_EQ(lvol_info(u)["num_allocated_clusters"], 4);
    EXPECT_EQ(free_clusters(), free0 - 4);
    // Blocks 1024 .. 3*2048+1024: cluster 1 and 2 whole, halves of 0 and 3.
    ASSERT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 1024, 3 * 2048, f, c); }).ok());
    EXPECT_EQ(lvol_info(u)["num_allocated_clusters"], 2);
    EXPECT_EQ(lvol_entry("thin")["num_allocated_clusters"], 2);
    EXPECT_EQ(free_clusters(), free0 - 2);
    std::vector<uint8_t> r(1024 * 512);
    ASSERT_TRUE(read_blocks(h, 0, r).ok());
    EXPECT_TRUE(std::equal(r.begin(), r.end(), data.begin()));
    ASSERT_TRUE(read_blocks(h, 3 * 2048 + 1024, r).ok());
    EXPECT_TRUE(std::equal(r.begin(), r.end(), data.begin() + (3 * 2048 + 1024) * 512));
    std::vector<uint8_t> z(2048 * 512);
    ASSERT_TRUE(read_blocks(h, 2048, z).ok());
    EXPECT_EQ(z, std::vector<uint8_t>(z.size(), 0));
}

TEST_F(LvolClearTest, EsnapCloneDegradedWhileItsBdevIsMissing) {
    lvstore();
    malloc("Ext", 4096, 512);  // 2 MiB
    const auto ext = pattern(4096 * 512, 9);
    {
        Handle& h = open("Ext");
        ASSERT_TRUE(write_blocks(h, 0, ext).ok());
        close(h);
    }
    const std::string u = call("bdev_lvol_clone_bdev",
                               {{"bdev", "Ext"}, {"lvs_name", "lvs0"}, {"clone_name", "ec"}});
    ASSERT_EQ(u.size(), 36u);
    const std::string ext_uuid = call("bdev_get_bdevs", {{"name", "Ext"}})[0]["uuid"];
    ASSERT_EQ(call("bdev_lvol_clone_bdev", {{"bdev", ext_uuid}, {"lvs_name", "lvs0"},
                                            {"clone_name", "ec2"}}).get<std::string>().size(), 36u);
    EXPECT_EQ(call_error("bdev_lvol_clone_bdev", {{"bdev", "Nope"}, {"lvs_name", "lvs0"},
                                                  {"clone_name", "x"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_lvol_clone_bdev", {{"bdev", "Malloc0"}, {"lvs_name", "lvs0"},
                                                  {"clone_name", "x"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_lvol_clone_bdev", {{"bdev", "Ext"}, {"lvs_name", "lvs0"},
                                                  {"clone_name", "ec"}})["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_lvol_clone_bdev", {{"bdev", "lvs0/ec"}, {"lvs_name", "lvs0"},
                                                  {"clone_name", "x"}})["code"], -EINVAL);
    Json e = lvol_entry("ec");
    EXPECT_EQ(e["is_esnap_clone"], true);
    EXPECT_EQ(e["is_degraded"], false);
    EXPECT_EQ(e["is_thin_provisioned"], true);
    EXPECT_EQ(e["external_snapshot_name"], "Ext");
    EXPECT_EQ(lvol_info(u)["esnap_clone"], true);
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", u}})[0]["num_blocks"], 4096);
    const auto mine = pattern(8 * 512, 10);
    {
        Handle& h = open("lvs0/ec");
        std::vector<uint8_t> r(ext.size());
        ASSERT_TRUE(read_blocks(h, 0, r).ok());
        EXPECT_EQ(r, ext);
        ASSERT_TRUE(write_blocks(h, 8, mine).ok());  // copies cluster 0 from Ext first
        close(h);
    }
    // Restart without Ext: both clones are listed as degraded and have no bdev.
    bool done = false;
    runtime::spawn(app->thread(), lvol::unload_all(), [&] { done = true; });
    ASSERT_TRUE(poll_until([&] { return done; }));
    EXPECT_EQ(call("bdev_malloc_delete", {{"name", "Ext"}}), true);
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    EXPECT_EQ(call("bdev_wait_for_examine"), true);
    ASSERT_EQ(call("bdev_lvol_get_lvols").size(), 2u);
    EXPECT_EQ(lvol_entry("ec")["is_degraded"], true);
    EXPECT_EQ(lvol_entry("ec")["external_snapshot_name"], "Ext");
    EXPECT_FALSE(exists("lvs0/ec"));
    EXPECT_FALSE(exists(u));
    // A degraded lvol can be deleted.
    EXPECT_EQ(call("bdev_lvol_delete", {{"name", "lvs0/ec2"}}), true);
    // Ext comes back (same name, same data): examine hands it over and the bdev registers.
    malloc("Ext", 4096, 512);
    {
        Handle& h = open("Ext");
        ASSERT_TRUE(write_blocks(h, 0, ext).ok());
        close(h);
    }
    EXPECT_EQ(call("bdev_wait_for_examine"), true);
    ASSERT_TRUE(exists("lvs0/ec"));
    EXPECT_EQ(lvol_entry("ec")["is_degraded"], false);
    Handle& h = open("lvs0/ec");
    std::vector<uint8_t> r(ext.size());
    ASSERT_TRUE(read_blocks(h, 0, r).ok());
    auto want = ext;
    std::copy(mine.begin(), mine.end(), want.begin() + 8 * 512);
    EXPECT_EQ(r, want);
    EXPECT_EQ(call("bdev_lvol_get_lvols").size(), 1u);
    // Ext removed while the lvol is open: the removal completes, the lvol turns degraded (its
    // bdev stays; reads through to Ext fail) and heals when Ext is back.
    EXPECT_EQ(call("bdev_malloc_delete", {{"name", "Ext"}}), true);
    EXPECT_EQ(lvol_entry("ec")["is_degraded"], true);
    std::vector<uint8_t> one(512);
    EXPECT_EQ(read_blocks(h, 2048, one).code, Errc::io_error);
    ASSERT_TRUE(read_blocks(h, 8, one).ok());  // its own cluster
    EXPECT_TRUE(std::equal(one.begin(), one.end(), mine.begin()));
    malloc("Ext", 4096, 512);
    EXPECT_EQ(call("bdev_wait_for_examine"), true);
    EXPECT_EQ(lvol_entry("ec")["is_degraded"], false);
    EXPECT_TRUE(read_blocks(h, 2048, one).ok());
}

// Two Apps (two Python Worlds) in one process on one simulator: the lvol module's state
// (control Thread, stores, operation lock) is each App's Host's, so each has its own "lvs0".
class LvolTwoAppsTest : public stack::testing::SimAppsTest {
protected:
    void SetUp() override {
        start_sim(7);
        for (const char* name : {"a", "b"}) add_app(name);
    }
    // A malloc base, an lvstore on it and one lvol; returns the store's UUID.
    std::string stack(size_t i, const std::string& base, uint64_t blocks, const std::string& lvs,
                      const std::string& lvol, uint64_t mib) {
        call(i, "bdev_malloc_create", {{"name", base}, {"num_blocks", blocks}, {"block_size", 512}});
        EXPECT_EQ(call(i, "bdev_wait_for_examine"), true);
        Json u = call(i, "bdev_lvol_create_lvstore",
                      {{"bdev_name", base}, {"lvs_name", lvs}, {"cluster_sz", 1 << 20}});
        Json l = call(i, "bdev_lvol_create", {{"lvol_name", lvol}, {"size_in_mib", mib},
                                              {"lvs_name", lvs}});
        EXPECT_TRUE(l.is_string());
        return u.is_string() ? u.get<std::string>() : "";
    }
    Json lvol_names(size_t i) {
        Json names = Json::array();
        for (const Json& l : call(i, "bdev_lvol_get_lvols")) names.push_back(l["name"]);
        return names;
    }
};

// The same base and store names in both Apps (the bdev registry is per Host: were it
// process-wide, the second Malloc0 would be refused and the App that stops first would delete
// the other's bdevs with its own). Param: the first App stops first.
class LvolTwoAppsStopTest : public LvolTwoAppsTest, public ::testing::WithParamInterface<bool> {
protected:
    // The App's bdev_malloc_create entries in its save_config.
    Json malloc_config(size_t i) {
        Json out = Json::array();
        const Json saved = call(i, "save_config");
        for (const Json& s : saved["subsystems"])
            if (s["subsystem"] == "bdev")
                for (const Json& e : s["config"])
                    if (e["method"] == "bdev_malloc_create") out.push_back(e["params"]);
        return out;
    }
};

TEST_P(LvolTwoAppsStopTest, SameNamesEverywhereAndEitherStopsFirst) {
    const std::string ua = stack(0, "Malloc0", 65536, "lvs0", "x", 4);
    const std::string ub = stack(1, "Malloc0", 32768, "lvs0", "y", 2);
    ASSERT_EQ(ua.size(), 36u);
    ASSERT_EQ(ub.size(), 36u);
    EXPECT_NE(ua, ub);
    for (size_t i : {0u, 1u}) {
        Json stores = call(i, "bdev_lvol_get_lvstores");
        ASSERT_EQ(stores.size(), 1u) << i;
        EXPECT_EQ(stores[0]["uuid"], i == 0 ? ua : ub);
        EXPECT_EQ(stores[0]["base_bdev"], "Malloc0");
    }
    EXPECT_EQ(lvol_names(0), Json::array({"x"}));
    EXPECT_EQ(lvol_names(1), Json::array({"y"}));
    // Each App's operations queue on its own lock and control Thread: renaming one App's store
    // leaves the other's store of the same name alone.
    EXPECT_EQ(call(1, "bdev_lvol_rename_lvstore", {{"old_name", "lvs0"}, {"new_name", "lvs1"}}),
              true);
    EXPECT_EQ(call(0, "bdev_lvol_get_lvstores")[0]["name"], "lvs0");
    EXPECT_EQ(call(1, "bdev_lvol_get_lvstores")[0]["name"], "lvs1");
    EXPECT_EQ(call(1, "bdev_lvol_rename_lvstore", {{"old_name", "lvs1"}, {"new_name", "lvs0"}}),
              true);
    Json ma = malloc_config(0), mb = malloc_config(1);
    ASSERT_EQ(ma.size(), 1u);
    ASSERT_EQ(mb.size(), 1u);
    EXPECT_EQ(ma[0]["num_blocks"], 65536);
    EXPECT_EQ(mb[0]["num_blocks"], 32768);

    // One App stops (its stores unload with it); the other's store keeps working.
    const size_t first = GetParam() ? 0 : 1, other = 1 - first;
    stop(first);
    Json z = call(other, "bdev_lvol_create", {{"lvol_name", "z"}, {"size_in_mib", 1},
                                              {"lvs_name", "lvs0"}});
    EXPECT_TRUE(z.is_string());
    EXPECT_EQ(lvol_names(other), Json::array({other == 0 ? "x" : "y", "z"}));
    EXPECT_EQ(call(other, "bdev_lvol_get_lvstores")[0]["uuid"], other == 0 ? ua : ub);
    EXPECT_EQ(call(other, "bdev_lvol_delete_lvstore", {{"lvs_name", "lvs0"}}), true);
}

INSTANTIATE_TEST_SUITE_P(StopOrder, LvolTwoAppsStopTest, ::testing::Bool(),
                         [](const auto& info) {
                             return info.param ? "FirstStopsFirst" : "SecondStopsFirst";
                         });

}  // namespace
}  // namespace strata::bdev::testing
