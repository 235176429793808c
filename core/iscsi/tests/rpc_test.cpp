// SPDK's iscsi_* RPCs on an App (every module, on the simulator): result shapes, bad
// parameters answered -32602 / -32603 with messages naming the value, and save_config
// replayed into a new App giving the same state.
#include <gtest/gtest.h>

#include <string>

#include <strata/stack/sim_apps.h>

namespace strata::iscsi {
namespace {

using Json = nlohmann::json;

class IscsiRpc : public stack::testing::SimAppsTest {
protected:
    void SetUp() override {
        start_sim(5);
        add_app("tgt");
        for (const char* n : {"Malloc0", "Malloc1", "Malloc2"})
            call(0, "bdev_malloc_create", {{"name", n}, {"num_blocks", 256}, {"block_size", 512}});
    }
    // The error object of a call expected to fail.
    Json err(const std::string& method, Json params = Json::object(), size_t app = 0) {
        Json r = rpc(app, method, std::move(params));
        EXPECT_TRUE(r.contains("error")) << method << ": " << r.dump();
        return r.contains("error") ? r["error"] : Json::object();
    }
    void expect_err(const std::string& method, Json params, int code, const std::string& text) {
        Json e = err(method, params);
        EXPECT_EQ(e.value("code", 0), code) << method << " " << params.dump() << ": " << e.dump();
        EXPECT_NE(e.value("message", "").find(text), std::string::npos)
            << method << " " << params.dump() << ": " << e.dump();
    }
    // Portal group 1, initiator group 2, auth group 3, node "disk1" over Malloc0 with CHAP.
    void populate(size_t app = 0) {
        EXPECT_EQ(call(app, "iscsi_create_auth_group",
                       {{"tag", 3},
                        {"secrets",
                         {{{"user", "u1"}, {"secret", "s1"}},
                          {{"user", "u2"}, {"secret", "s2"}, {"muser", "m2"}, {"msecret", "ms2"}}}}}),
                  true);
        EXPECT_EQ(call(app, "iscsi_create_portal_group",
                       {{"tag", 1},
                        {"portals", {{{"host", "127.0.0.1"}, {"port", "3260"}}}},
                        {"private", false},
                        {"wait", false}}),
                  true);
        EXPECT_EQ(call(app, "iscsi_create_initiator_group",
                       {{"tag", 2}, {"initiators", {"ANY"}}, {"netmasks", {"127.0.0.0/8"}}}),
                  true);
        EXPECT_EQ(call(app, "iscsi_create_target_node",
                       {{"name", "disk1"},
                        {"alias_name", "Data Disk1"},
                        {"pg_ig_maps", {{{"pg_tag", 1}, {"ig_tag", 2}}}},
                        {"luns", {{{"bdev_name", "Malloc0"}, {"lun_id", 0}}}},
                        {"queue_depth", 32},
                        {"disable_chap", false},
                        {"require_chap", true},
                        {"mutual_chap", false},
                        {"chap_group", 3},
                        {"header_digest", false},
                        {"data_digest", false}}),
                  true);
    }
};

TEST_F(IscsiRpc, ShapesAndLifecycle) {
    Json o = call(0, "iscsi_get_options");
    EXPECT_EQ(o["node_base"], "iqn.2016-06.io.spdk");
    EXPECT_EQ(o["max_sessions"], 128);
    EXPECT_EQ(o["max_queue_depth"], 64);
    EXPECT_EQ(o["first_burst_length"], 8192);
    EXPECT_EQ(o["immediate_data"], true);
    EXPECT_EQ(o["nop_timeout"], 60);
    EXPECT_EQ(o["chap_group"], 0);
    EXPECT_EQ(o["pdu_pool_size"], 128 * 2 * (64 + 64 + 8 + 8));
    EXPECT_FALSE(o.contains("auth_file"));

    populate();
    EXPECT_EQ(call(0, "iscsi_get_portal_groups"),
              Json::parse(R"([{"tag":1,"portals":[{"host":"127.0.0.1","port":"3260"}],
                              "private":false}])"));
    EXPECT_EQ(call(0, "iscsi_get_initiator_groups"),
              Json::parse(R"([{"tag":2,"initiators":["ANY"],"netmasks":["127.0.0.0/8"]}])"));
    EXPECT_EQ(call(0, "iscsi_get_auth_groups"),
              Json::parse(R"([{"tag":3,"secrets":[{"user":"u1","secret":"s1"},
                              {"user":"u2","secret":"s2","muser":"m2","msecret":"ms2"}]}])"));
    EXPECT_EQ(call(0, "iscsi_get_target_nodes"), Json::parse(R"([{
        "name":"iqn.2016-06.io.spdk:disk1","alias_name":"Data Disk1",
        "pg_ig_maps":[{"pg_tag":1,"ig_tag":2}],"luns":[{"bdev_name":"Malloc0","lun_id":0}],
        "queue_depth":32,"disable_chap":false,"require_chap":true,"mutual_chap":false,
        "chap_group":3,"header_digest":false,"data_digest":false}])"));
    EXPECT_EQ(call(0, "scsi_get_devices"),
              Json::parse(R"([{"id":0,"device_name":"iqn.2016-06.io.spdk:disk1"}])"));
    EXPECT_EQ(call(0, "iscsi_get_connections"), Json::array());

    // Changes.
    EXPECT_EQ(call(0, "iscsi_target_node_add_lun",
                   {{"name", "iqn.2016-06.io.spdk:disk1"}, {"bdev_name", "Malloc1"}}),
              true);
    EXPECT_EQ(call(0, "iscsi_target_node_add_lun",
                   {{"name", "disk1"}, {"bdev_name", "Malloc2"}, {"lun_id", 7}}),
              true);
    Json luns = call(0, "iscsi_get_target_nodes")[0]["luns"];
    EXPECT_EQ(luns, Json::parse(R"([{"bdev_name":"Malloc0","lun_id":0},
        {"bdev_name":"Malloc1","lun_id":1},{"bdev_name":"Malloc2","lun_id":7}])"));
    EXPECT_EQ(call(0, "iscsi_initiator_group_add_initiators",
                   {{"tag", 2}, {"initiators", {"!iqn.2016-06.io.spdk:bad"}}}),
              true);
    EXPECT_EQ(call(0, "iscsi_initiator_group_remove_initiators",
                   {{"tag", 2}, {"netmasks", {"127.0.0.0/8"}}}),
              true);
    EXPECT_EQ(call(0, "iscsi_get_initiator_groups")[0]["netmasks"], Json::array());
    EXPECT_EQ(call(0, "iscsi_auth_group_add_secret",
                   {{"tag", 3}, {"user", "u3"}, {"secret", "s3"}}),
              true);
    EXPECT_EQ(call(0, "iscsi_auth_group_remove_secret", {{"tag", 3}, {"user", "u1"}}), true);
    EXPECT_EQ(call(0, "iscsi_get_auth_groups")[0]["secrets"].size(), 2u);
    EXPECT_EQ(call(0, "iscsi_set_discovery_auth", {{"require_chap", true}, {"chap_group", 3}}),
              true);
    EXPECT_EQ(call(0, "iscsi_get_options")["require_chap"], true);
    EXPECT_EQ(call(0, "iscsi_target_node_set_auth", {{"name", "disk1"}, {"disable_chap", true}}),
              true);
    Json node = call(0, "iscsi_get_target_nodes")[0];
    EXPECT_EQ(node["disable_chap"], true);
    EXPECT_EQ(node["require_chap"], false);
    EXPECT_EQ(node["chap_group"], 0);
    EXPECT_EQ(call(0, "iscsi_create_portal_group",
                   {{"tag", 4}, {"portals", {{{"host", "[::1]"}, {"port", "3261"}}}},
                    {"wait", true}}),
              true);
    EXPECT_EQ(call(0, "iscsi_start_portal_group", {{"tag", 4}}), true);
    EXPECT_EQ(call(0, "iscsi_target_node_add_pg_ig_maps",
                   {{"name", "disk1"}, {"pg_ig_maps", {{{"pg_tag", 4}, {"ig_tag", 2}}}}}),
              true);
    EXPECT_EQ(call(0, "iscsi_get_target_nodes")[0]["pg_ig_maps"].size(), 2u);
    EXPECT_EQ(call(0, "iscsi_target_node_remove_pg_ig_maps",
                   {{"name", "disk1"}, {"pg_ig_maps", {{{"pg_tag", 4}, {"ig_tag", 2}}}}}),
              true);
    EXPECT_EQ(call(0, "iscsi_delete_portal_group", {{"tag", 4}}), true);

    // Teardown in SPDK's order.
    EXPECT_EQ(call(0, "iscsi_delete_target_node", {{"name", "iqn.2016-06.io.spdk:disk1"}}), true);
    EXPECT_EQ(call(0, "scsi_get_devices"), Json::array());
    EXPECT_EQ(call(0, "bdev_get_bdevs", {{"name", "Malloc0"}})[0]["claimed"], false);
    EXPECT_EQ(call(0, "iscsi_delete_initiator_group", {{"tag", 2}}), true);
    EXPECT_EQ(call(0, "iscsi_delete_portal_group", {{"tag", 1}}), true);
    EXPECT_EQ(call(0, "iscsi_set_discovery_auth", Json::object()), true);
    EXPECT_EQ(call(0, "iscsi_delete_auth_group", {{"tag", 3}}), true);
    EXPECT_EQ(call(0, "iscsi_get_auth_groups"), Json::array());
    // Options again, once nothing exists.
    EXPECT_EQ(call(0, "iscsi_set_options", {{"node_base", "iqn.2001-04.com.example"},
                                            {"max_queue_depth", 128},
                                            {"no_discovery_auth", true}}),
              true);
    o = call(0, "iscsi_get_options");
    EXPECT_EQ(o["node_base"], "iqn.2001-04.com.example");
    EXPECT_EQ(o["disable_chap"], true);
}

TEST_F(IscsiRpc, BadParameters) {
    constexpr int kInvalid = -32602;
    constexpr int kInternal = -32603;
    expect_err("iscsi_create_portal_group", {{"tag", 0}, {"portals", {{{"host", "1.2.3.4"},
                                                                       {"port", "3260"}}}}},
               kInvalid, "tag 0");
    expect_err("iscsi_create_portal_group", {{"tag", 1}}, kInvalid, "missing parameter 'portals'");
    expect_err("iscsi_create_portal_group", {{"tag", "1"}, {"portals", Json::array()}}, kInvalid,
               "'tag' must be an integer");
    expect_err("iscsi_create_portal_group", {{"tag", 1}, {"portals", {{{"host", "1.2.3.4"}}}}},
               kInvalid, "portals[0]: missing parameter 'port'");
    expect_err("iscsi_create_portal_group",
               {{"tag", 1}, {"portals", {{{"host", "1.2.3.4"}, {"port", "x"}, {"z", 1}}}}},
               kInvalid, "portals[0]: unknown parameter 'z'");
    expect_err("iscsi_create_portal_group",
               {{"tag", 1}, {"portals", {{{"host", "1.2.3.4"}, {"port", "70000"}}}}}, kInvalid,
               "'70000'");
    expect_err("iscsi_create_portal_group",
               {{"tag", 1}, {"portals", {{{"host", "1.2.3.4"}, {"port", "3260"}}}}, {"foo", 1}},
               kInvalid, "unknown parameter 'foo'");
    expect_err("iscsi_create_portal_group",
               {{"tag", 5000000000}, {"portals", {{{"host", "1.2.3.4"}, {"port", "3260"}}}}},
               kInvalid, "out of range");
    expect_err("iscsi_create_initiator_group",
               {{"tag", 2}, {"initiators", {"ANY"}}, {"netmasks", {"10.0.0.0/40"}}}, kInvalid,
               "'10.0.0.0/40'");
    expect_err("iscsi_create_initiator_group",
               {{"tag", 2}, {"initiators", {"ANY", 5}}, {"netmasks", {"ANY"}}}, kInvalid,
               "initiators[1] must be a string");
    expect_err("iscsi_create_initiator_group",
               {{"tag", 2}, {"initiators", {"host 1"}}, {"netmasks", {"ANY"}}}, kInvalid,
               "not a valid iSCSI name");
    expect_err("iscsi_create_auth_group", {{"tag", 3}, {"secrets", {{{"user", "u"}}}}}, kInvalid,
               "secrets[0]: missing parameter 'secret'");
    expect_err("iscsi_create_auth_group",
               {{"tag", 3}, {"secrets", {{{"user", "u"}, {"secret", "s"}, {"muser", "m"}}}}},
               kInvalid, "muser and msecret");
    expect_err("iscsi_set_discovery_auth", {{"disable_chap", true}, {"mutual_chap", true}},
               kInvalid, "CHAP");
    expect_err("iscsi_set_options", {{"max_queue_depth", 0}}, kInvalid, "max_queue_depth 0");
    expect_err("iscsi_set_options", {{"nop_timeout", -1}}, kInvalid, "nop_timeout");

    populate();
    expect_err("iscsi_create_portal_group",
               {{"tag", 1}, {"portals", {{{"host", "127.0.0.2"}, {"port", "3260"}}}}}, kInvalid,
               "portal group 1 already exists");
    expect_err("iscsi_set_options", {{"max_sessions", 4}}, kInternal, "no portal group");
    expect_err("iscsi_delete_portal_group", {{"tag", 1}}, kInternal, "mapped by target node");
    expect_err("iscsi_delete_initiator_group", {{"tag", 2}}, kInternal, "mapped by target node");
    expect_err("iscsi_delete_auth_group", {{"tag", 3}}, kInternal, "used by target node");
    expect_err("iscsi_delete_portal_group", {{"tag", 9}}, kInvalid, "portal group 9 not found");
    Json node = {{"name", "disk2"},
                 {"pg_ig_maps", {{{"pg_tag", 1}, {"ig_tag", 2}}}},
                 {"luns", {{{"bdev_name", "Malloc0"}, {"lun_id", 0}}}},
                 {"queue_depth", 64}};
    expect_err("iscsi_create_target_node", node, kInvalid, "Malloc0");  // claimed by disk1
    node["luns"][0]["bdev_name"] = "Nope";
    expect_err("iscsi_create_target_node", node, kInvalid, "Nope");
    node["luns"][0]["bdev_name"] = "Malloc1";
    node["pg_ig_maps"][0]["ig_tag"] = 9;
    expect_err("iscsi_create_target_node", node, kInvalid, "initiator group 9 not found");
    node["pg_ig_maps"][0] = {{"pg_tag", 1}};
    expect_err("iscsi_create_target_node", node, kInvalid, "pg_ig_maps[0]: missing parameter");
    node["pg_ig_maps"][0] = {{"pg_tag", 1}, {"ig_tag", 2}};
    node["queue_depth"] = 65;
    expect_err("iscsi_create_target_node", node, kInvalid, "queue_depth 65");
    node["queue_depth"] = 64;
    node["name"] = "disk1";
    expect_err("iscsi_create_target_node", node, kInvalid, "already exists");
    node.erase("queue_depth");
    expect_err("iscsi_create_target_node", node, kInvalid, "missing parameter 'queue_depth'");
    expect_err("iscsi_delete_target_node", {{"name", "disk9"}}, kInvalid, "not found");
    expect_err("iscsi_target_node_add_lun", {{"name", "disk1"}, {"bdev_name", "Malloc0"}},
               kInvalid, "Malloc0");
    expect_err("iscsi_target_node_add_lun",
               {{"name", "disk1"}, {"bdev_name", "Malloc1"}, {"lun_id", 0}}, kInvalid,
               "LUN 0 exists");
    expect_err("iscsi_target_node_add_pg_ig_maps",
               {{"name", "disk1"}, {"pg_ig_maps", {{{"pg_tag", 1}, {"ig_tag", 2}}}}}, kInvalid,
               "already maps");
    expect_err("iscsi_target_node_remove_pg_ig_maps",
               {{"name", "disk1"}, {"pg_ig_maps", {{{"pg_tag", 1}, {"ig_tag", 5}}}}}, kInvalid,
               "does not map");
    expect_err("iscsi_target_node_set_auth", {{"name", "disk1"}, {"mutual_chap", true}},
               kInvalid, "mutual_chap requires require_chap");
    expect_err("iscsi_get_target_nodes", {{"x", 1}}, kInvalid, "unknown parameter 'x'");
    // Nothing changed by the failures.
    EXPECT_EQ(call(0, "iscsi_get_target_nodes").size(), 1u);
    EXPECT_EQ(call(0, "iscsi_get_target_nodes")[0]["luns"].size(), 1u);
    EXPECT_EQ(call(0, "scsi_get_devices").size(), 1u);
}

TEST_F(IscsiRpc, SaveConfigReplays) {
    call(0, "iscsi_set_options",
         {{"node_base", "iqn.2001-04.com.example"},
          {"max_sessions", 16},
          {"first_burst_length", 16384},
          {"max_burst_length", 262144},
          {"data_digest_accel_threshold", 65536}});
    populate();
    call(0, "iscsi_create_portal_group",
         {{"tag", 5}, {"portals", {{{"host", "0.0.0.0"}, {"port", "3262"}}}}, {"private", true},
          {"wait", true}});
    call(0, "iscsi_target_node_add_lun", {{"name", "disk1"}, {"bdev_name", "Malloc1"},
                                          {"lun_id", 3}});
    call(0, "iscsi_target_node_add_pg_ig_maps",
         {{"name", "disk1"}, {"pg_ig_maps", {{{"pg_tag", 5}, {"ig_tag", 2}}}}});
    call(0, "iscsi_set_discovery_auth", {{"require_chap", true}, {"mutual_chap", true},
                                         {"chap_group", 3}});
    Json saved = call(0, "save_config");
    Json iscsi;
    std::vector<std::string> order;
    for (const auto& s : saved["subsystems"])
        if (s["subsystem"] == "iscsi") iscsi = s["config"];
    for (const auto& e : iscsi) order.push_back(e["method"]);
    EXPECT_EQ(order, (std::vector<std::string>{
                         "iscsi_set_options", "iscsi_create_auth_group",
                         "iscsi_create_portal_group", "iscsi_create_portal_group",
                         "iscsi_create_initiator_group", "iscsi_create_target_node"}));
    // SPDK's option names; the Strata extension only because it changed.
    EXPECT_TRUE(iscsi[0]["params"].contains("max_burst_length"));
    EXPECT_EQ(iscsi[0]["params"].value("data_digest_accel_threshold", 0u), 65536u);
    EXPECT_FALSE(iscsi[0]["params"].contains("chap_challenge_length"));

    const size_t b = add_app("tgt2", saved);
    for (const char* m : {"iscsi_get_options", "iscsi_get_portal_groups",
                          "iscsi_get_initiator_groups", "iscsi_get_auth_groups",
                          "iscsi_get_target_nodes", "scsi_get_devices"})
        EXPECT_EQ(call(b, m), call(0, m)) << m;
    EXPECT_EQ(call(b, "iscsi_get_target_nodes")[0]["name"], "iqn.2001-04.com.example:disk1");
    Json again = call(b, "save_config");
    for (const auto& s : again["subsystems"])
        if (s["subsystem"] == "iscsi") EXPECT_EQ(s["config"], iscsi);
}

}  // namespace
}  // namespace strata::iscsi
