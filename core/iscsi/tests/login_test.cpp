// core/iscsi login and text negotiation: key parsing, every key's result function and range,
// full login exchanges (no auth, CHAP one-way and mutual, failures with their status codes),
// discovery with SendTargets, and the CHAP known answers.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <strata/iscsi/internal/login.h>

namespace strata::iscsi {
namespace {

using namespace std::string_literals;

constexpr const char* kIqnI = "iqn.2026-12.io.strata:initiator";
constexpr const char* kIqnT = "iqn.2016-06.io.spdk:disk1";

class FakeHost : public LoginHost {
public:
    std::map<std::string, TargetInfo> targets;
    std::map<std::string, ChapSecret> secrets;  // by user
    AuthPolicy discovery;
    bool deny_acl = false;
    uint16_t next_tsih = 1;
    bool session_exists = false;
    SessionParams existing;

    LoginStatus find_target(std::string_view name, std::string_view, TargetInfo* out) override {
        auto it = targets.find(std::string(name));
        if (it == targets.end()) return login_status::not_found;
        if (deny_acl) return login_status::authorization_failure;
        *out = it->second;
        return login_status::success;
    }
    AuthPolicy discovery_auth() override { return discovery; }
    LoginStatus join_session(const Isid&, uint16_t, std::string_view, std::string_view,
                             SessionParams* params) override {
        if (!session_exists) return login_status::session_does_not_exist;
        *params = existing;
        return login_status::success;
    }
    uint16_t new_session(const Isid&, std::string_view, std::string_view, SessionType) override {
        return next_tsih++;
    }
    std::vector<SendTargetsEntry> send_targets(std::string_view) override {
        std::vector<SendTargetsEntry> v;
        for (auto& [n, t] : targets) v.push_back({n, {"10.0.0.1:3260,1", "[fe80::1]:3260,1"}});
        return v;
    }
    bool lookup(int32_t group, std::string_view user, ChapSecret* out) const override {
        auto it = secrets.find(std::string(user));
        if (it == secrets.end() || group != 1) return false;
        *out = it->second;
        return true;
    }
};

struct Rsp {
    LoginRsp bhs;
    std::map<std::string, std::string> keys;
    std::string text;
};

Rsp parse_login_rsp(const std::vector<uint8_t>& out) {
    Rsp r;
    EXPECT_GE(out.size(), kBhsSize);
    r.bhs = bhs_as<LoginRsp>(out.data());
    const uint32_t dl = r.bhs.data_segment_length.get();
    EXPECT_EQ(out.size(), kBhsSize + dl + pad4(dl));
    r.text.assign(reinterpret_cast<const char*>(out.data()) + kBhsSize, dl);
    std::vector<KeyValue> kvs;
    EXPECT_EQ(parse_text({out.data() + kBhsSize, dl}, kvs), TextError::none) << r.text;
    for (auto& kv : kvs) r.keys[std::string(kv.key)] = kv.value;
    return r;
}

std::string kv(std::initializer_list<std::pair<std::string, std::string>> l) {
    std::string s;
    for (auto& [k, v] : l) append_key(s, k, v);
    return s;
}

class LoginTest : public ::testing::Test {
protected:
    TargetOptions opts;
    FakeHost host;
    Prng rng{42};
    std::unique_ptr<LoginConnection> conn;
    uint16_t tsih = 0;

    void SetUp() override {
        host.targets[kIqnT] = TargetInfo{kIqnT, "disk one", {}};
        host.secrets["alice"] = ChapSecret{"alice", "alicesecret1", "tgt", "targetsecret1"};
        reset();
    }
    void reset() {
        LoginConfig cfg;
        cfg.options = &opts;
        cfg.host = &host;
        cfg.rng = &rng;
        cfg.portal_group_tag = 1;
        conn = std::make_unique<LoginConnection>(cfg);
    }
    LoginConnection::Outcome send(uint8_t flags, const std::string& text, Rsp* rsp,
                                  uint8_t vmin = 0) {
        LoginReq q{};
        q.opcode = uint8_t(Opcode::login_req) | kImmediateBit;
        q.flags = flags;
        q.version_min = vmin;
        q.version_max = 0;
        const uint8_t isid[6] = {0x80, 1, 2, 3, 4, 5};
        std::memcpy(q.isid, isid, 6);
        q.tsih.set(tsih);
        q.itt.set(0x1000);
        q.cid.set(0);
        q.cmd_sn.set(100);
        q.exp_stat_sn.set(500);
        q.data_segment_length.set(uint32_t(text.size()));
        std::vector<uint8_t> out;
        const auto o = conn->on_pdu(reinterpret_cast<const uint8_t*>(&q),
                                    {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, out);
        *rsp = parse_login_rsp(out);
        EXPECT_EQ(rsp->bhs.itt.get(), 0x1000u);
        EXPECT_EQ(rsp->bhs.opcode, uint8_t(Opcode::login_rsp));
        return o;
    }
    static constexpr uint8_t sec_to_op = login_flags::transit | (0 << 2) | 1;
    static constexpr uint8_t sec_stay = 0;
    static constexpr uint8_t op_to_ffp = login_flags::transit | (1 << 2) | 3;

    std::string identity(const char* type = "Normal") {
        return kv({{"InitiatorName", kIqnI}, {"SessionType", type}, {"TargetName", kIqnT}});
    }
    // A full-featured operational stage, as Linux's initiator sends it.
    std::string linux_op_keys() {
        return kv({{"HeaderDigest", "CRC32C,None"}, {"DataDigest", "None"},
                   {"MaxConnections", "1"}, {"InitialR2T", "No"}, {"ImmediateData", "Yes"},
                   {"MaxRecvDataSegmentLength", "262144"}, {"MaxBurstLength", "16776192"},
                   {"FirstBurstLength", "262144"}, {"DefaultTime2Wait", "0"},
                   {"DefaultTime2Retain", "0"}, {"MaxOutstandingR2T", "1"},
                   {"DataPDUInOrder", "Yes"}, {"DataSequenceInOrder", "Yes"},
                   {"ErrorRecoveryLevel", "0"}, {"IFMarker", "No"}, {"OFMarker", "No"}});
    }
};

TEST(IscsiText, ParseRules) {
    std::vector<KeyValue> kvs;
    const std::string ok = "A=1\0B=\0C=x=y\0"s;
    ASSERT_EQ(parse_text({reinterpret_cast<const uint8_t*>(ok.data()), ok.size()}, kvs),
              TextError::none);
    ASSERT_EQ(kvs.size(), 3u);
    EXPECT_EQ(kvs[1].value, "");
    EXPECT_EQ(kvs[2].value, "x=y");
    auto parse = [&](const std::string& s) {
        return parse_text({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, kvs);
    };
    EXPECT_EQ(parse(""), TextError::none);
    EXPECT_EQ(parse("A=1\0\0\0"s), TextError::none);  // NUL padding
    EXPECT_EQ(parse("A=1"), TextError::not_terminated);
    EXPECT_EQ(parse("A1\0"s), TextError::no_equals);
    EXPECT_EQ(parse("=1\0"s), TextError::empty_key);
    EXPECT_EQ(parse(std::string(64, 'K') + "=1\0"s), TextError::key_too_long);
    EXPECT_EQ(parse(std::string(63, 'K') + "=1\0"s), TextError::none);
    EXPECT_EQ(parse("A B=1\0"s), TextError::bad_key_char);
    EXPECT_EQ(parse("A=1\0A=2\0"s), TextError::duplicate_key);
}

TEST(IscsiText, KeyTable) {
    for (const auto& k : all_keys()) EXPECT_EQ(find_key(k.name), &k);
    EXPECT_EQ(find_key("headerdigest"), nullptr);  // case-sensitive
    const KeyDef* fbl = find_key("FirstBurstLength");
    ASSERT_NE(fbl, nullptr);
    EXPECT_EQ(fbl->kind, KeyKind::number_min);
    EXPECT_EQ(fbl->dflt, 65536u);
    EXPECT_EQ(find_key("DefaultTime2Wait")->kind, KeyKind::number_max);
    EXPECT_EQ(find_key("InitialR2T")->kind, KeyKind::boolean_or);
    EXPECT_EQ(find_key("ImmediateData")->kind, KeyKind::boolean_and);
    EXPECT_EQ(find_key("MaxRecvDataSegmentLength")->kind, KeyKind::declarative);
    EXPECT_TRUE(valid_iscsi_name(kIqnI));
    EXPECT_FALSE(valid_iscsi_name("foo"));
    EXPECT_FALSE(valid_iscsi_name("iqn." + std::string(220, 'a')));
}

TEST(IscsiChap, KnownAnswers) {
    const uint8_t abc[3] = {'a', 'b', 'c'};
    EXPECT_EQ(encode_hex(md5(abc)), "0x900150983cd24fb0d6963f7d28e17f72");  // RFC 1321 A.5
    std::vector<uint8_t> ch(16);
    for (int i = 0; i < 16; ++i) ch[i] = uint8_t(i);
    // MD5(0x01 || "SecretSecret" || 00 01 .. 0f), computed independently (Python hashlib).
    EXPECT_EQ(encode_hex(chap_md5_response(1, "SecretSecret", ch)),
              "0x57827cc20743bd0aa49807c6c1a840c1");
}

TEST(IscsiChap, Encodings) {
    const std::vector<uint8_t> b = {0xde, 0xad, 0xbe, 0xef, 0x01};
    EXPECT_EQ(encode_hex(b), "0xdeadbeef01");
    EXPECT_EQ(encode_base64(b), "0b3q2+7wE=");
    EXPECT_EQ(*decode_binary("0xDEADbeef01"), b);
    EXPECT_EQ(*decode_binary("0b3q2+7wE="), b);
    EXPECT_EQ(*decode_binary("0xabc"), (std::vector<uint8_t>{0x0a, 0xbc}));
    EXPECT_FALSE(decode_binary("0xzz"));
    EXPECT_FALSE(decode_binary("0b3q2"));
    EXPECT_FALSE(decode_binary("0b=AAA"));
    EXPECT_FALSE(decode_binary("deadbeef"));
    EXPECT_EQ(*decode_number("8192"), 8192u);
    EXPECT_EQ(*decode_number("0x2000"), 8192u);
    EXPECT_FALSE(decode_number("12a"));
    EXPECT_FALSE(decode_number("99999999999999999999999"));
    for (size_t n = 0; n < 10; ++n) {
        std::vector<uint8_t> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 37 + 1);
        if (n) {
            EXPECT_EQ(*decode_binary(encode_base64(v)), v);
        }
    }
}

TEST_F(LoginTest, NoAuthTwoStages) {
    Rsp r;
    ASSERT_EQ(send(sec_to_op, identity() + kv({{"AuthMethod", "None"}}), &r),
              LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.bhs.status_class, 0);
    EXPECT_EQ(r.keys["AuthMethod"], "None");
    EXPECT_EQ(r.keys["TargetPortalGroupTag"], "1");
    EXPECT_EQ(r.keys["TargetAlias"], "disk one");
    EXPECT_EQ(r.bhs.flags, sec_to_op);
    EXPECT_EQ(r.bhs.stat_sn.get(), 500u);  // from the first ExpStatSN
    EXPECT_EQ(r.bhs.tsih.get(), 0u);       // only the Final-Response carries it
    ASSERT_EQ(send(op_to_ffp, linux_op_keys(), &r), LoginConnection::Outcome::full_feature);
    EXPECT_EQ(r.bhs.flags, op_to_ffp);
    EXPECT_EQ(r.bhs.tsih.get(), 1u);
    EXPECT_EQ(r.bhs.stat_sn.get(), 501u);
    EXPECT_EQ(r.bhs.exp_cmd_sn.get(), 100u);
    EXPECT_EQ(r.bhs.max_cmd_sn.get(), 100u + 63);
    EXPECT_EQ(r.keys["HeaderDigest"], "CRC32C");
    EXPECT_EQ(r.keys["DataDigest"], "None");
    EXPECT_EQ(r.keys["InitialR2T"], "Yes");           // OR with ours (Yes)
    EXPECT_EQ(r.keys["ImmediateData"], "Yes");        // AND
    EXPECT_EQ(r.keys["MaxBurstLength"], "1048576");   // min(ours, theirs)
    EXPECT_EQ(r.keys["FirstBurstLength"], "8192");    // min, and <= MaxBurstLength
    EXPECT_EQ(r.keys["DefaultTime2Wait"], "2");       // max
    EXPECT_EQ(r.keys["DefaultTime2Retain"], "0");     // min
    EXPECT_EQ(r.keys["MaxRecvDataSegmentLength"], "65536");  // our declaration
    EXPECT_EQ(r.keys["ErrorRecoveryLevel"], "0");
    EXPECT_EQ(r.keys["IFMarker"], "No");
    const Negotiated& n = conn->negotiated();
    EXPECT_TRUE(n.header_digest);
    EXPECT_FALSE(n.data_digest);
    EXPECT_EQ(n.initiator_mrdsl, 262144u);
    EXPECT_EQ(n.target_mrdsl, 65536u);
    EXPECT_EQ(n.session.first_burst_length, 8192u);
    EXPECT_EQ(n.session.max_burst_length, 1048576u);
    EXPECT_EQ(n.sn.stat_sn, 502u);
    EXPECT_EQ(n.tsih, 1);
    EXPECT_EQ(n.target_name, kIqnT);
}

// SPDK offers MaxOutstandingR2T=1; max_r2t_per_connection caps the R2Ts of a whole
// connection in the connection layer and is never offered.
TEST_F(LoginTest, MaxOutstandingR2TIsOneWhateverTheConnectionCap) {
    opts.max_r2t_per_connection = 16;
    reset();
    Rsp r;
    ASSERT_EQ(send(sec_to_op, identity() + kv({{"AuthMethod", "None"}}), &r),
              LoginConnection::Outcome::in_progress);
    send(op_to_ffp, kv({{"MaxOutstandingR2T", "8"}}), &r);
    EXPECT_EQ(r.keys["MaxOutstandingR2T"], "1");
    EXPECT_EQ(conn->negotiated().session.max_outstanding_r2t, 1u);
}

// A node requiring digests (SPDK's header_digest/data_digest) accepts CRC32C only, and a login
// that ends without them fails.
TEST_F(LoginTest, RequiredDigests) {
    host.targets[kIqnT].header_digest = true;
    host.targets[kIqnT].data_digest = true;
    reset();
    Rsp r;
    ASSERT_EQ(send(sec_to_op, identity() + kv({{"AuthMethod", "None"}}), &r),
              LoginConnection::Outcome::in_progress);
    std::string keys = linux_op_keys();
    keys.replace(keys.find("CRC32C,None"), 11, "None");        // HeaderDigest
    keys.replace(keys.find("DataDigest=None"), 15, "DataDigest=CRC32C,None");
    auto o = send(op_to_ffp, keys, &r);
    // The login fails at the transition (the failure response carries no keys).
    for (int i = 0; i < 3 && o == LoginConnection::Outcome::in_progress; ++i)
        o = send(op_to_ffp, "", &r);
    EXPECT_EQ(o, LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::initiator_error);
    // Both offered: the login completes with both digests on.
    tsih = 0;
    reset();
    ASSERT_EQ(send(sec_to_op, identity() + kv({{"AuthMethod", "None"}}), &r),
              LoginConnection::Outcome::in_progress);
    keys = linux_op_keys();
    keys.replace(keys.find("CRC32C,None"), 11, "None,CRC32C");
    keys.replace(keys.find("DataDigest=None"), 15, "DataDigest=CRC32C");
    o = send(op_to_ffp, keys, &r);
    for (int i = 0; i < 3 && o == LoginConnection::Outcome::in_progress; ++i)
        o = send(op_to_ffp, "", &r);
    EXPECT_EQ(o, LoginConnection::Outcome::full_feature);
    EXPECT_TRUE(conn->negotiated().header_digest);
    EXPECT_TRUE(conn->negotiated().data_digest);
}

TEST_F(LoginTest, OperationalOnlyAndTargetOffers) {
    // Straight into the operational stage, leaving FirstBurstLength unsaid: the target offers
    // its 8192 (the default 65536 would exceed it) and completes only after the answer.
    Rsp r;
    ASSERT_EQ(send(op_to_ffp, identity(), &r), LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.bhs.status_class, 0);
    EXPECT_EQ(r.keys["FirstBurstLength"], "8192");
    EXPECT_FALSE(r.bhs.flags & login_flags::transit);
    ASSERT_EQ(send(op_to_ffp, kv({{"FirstBurstLength", "8192"}}), &r),
              LoginConnection::Outcome::full_feature);
    EXPECT_TRUE(r.bhs.flags & login_flags::transit);
    EXPECT_EQ(r.keys.count("FirstBurstLength"), 0u);  // an answer is not answered
    EXPECT_EQ(conn->negotiated().session.first_burst_length, 8192u);
}

TEST_F(LoginTest, OutOfRangeValuesRejected) {
    Rsp r;
    ASSERT_EQ(send(op_to_ffp,
                   identity() + kv({{"MaxBurstLength", "511"}, {"MaxConnections", "0"},
                                    {"DefaultTime2Wait", "3601"}, {"ErrorRecoveryLevel", "3"},
                                    {"MaxRecvDataSegmentLength", "16777216"},
                                    {"InitialR2T", "Maybe"}, {"HeaderDigest", "MD5"},
                                    {"FirstBurstLength", "8192"}, {"X-com.example.foo", "1"},
                                    {"TargetAlias", "x"}}),
                   &r),
              LoginConnection::Outcome::full_feature);
    EXPECT_EQ(r.keys["MaxBurstLength"], "Reject");
    EXPECT_EQ(r.keys["MaxConnections"], "Reject");
    EXPECT_EQ(r.keys["DefaultTime2Wait"], "Reject");
    EXPECT_EQ(r.keys["ErrorRecoveryLevel"], "Reject");
    EXPECT_EQ(r.keys["MaxRecvDataSegmentLength"], "Reject");
    EXPECT_EQ(conn->negotiated().target_mrdsl, 8192u);  // no declaration: the default
    EXPECT_EQ(conn->negotiated().initiator_mrdsl, 8192u);
    EXPECT_EQ(r.keys["InitialR2T"], "Reject");
    EXPECT_EQ(r.keys["HeaderDigest"], "Reject");
    EXPECT_EQ(r.keys["X-com.example.foo"], "NotUnderstood");
    EXPECT_EQ(r.keys["TargetAlias"], "Reject");  // a target-only key
    EXPECT_EQ(conn->negotiated().session.max_burst_length, 262144u);  // default kept
}

TEST_F(LoginTest, ErrorRecoveryLevelIsZero) {
    Rsp r;
    send(op_to_ffp, identity() + kv({{"ErrorRecoveryLevel", "2"}, {"FirstBurstLength", "512"}}), &r);
    EXPECT_EQ(r.keys["ErrorRecoveryLevel"], "0");
    EXPECT_EQ(r.keys["FirstBurstLength"], "512");
}

TEST_F(LoginTest, FirstBurstIrrelevantWithoutUnsolicitedData) {
    Rsp r;
    send(op_to_ffp,
         identity() + kv({{"InitialR2T", "Yes"}, {"ImmediateData", "No"}, {"FirstBurstLength", "512"}}),
         &r);
    EXPECT_EQ(r.keys["FirstBurstLength"], "Irrelevant");
}

TEST_F(LoginTest, DuplicateKeyAcrossPdusIsInitiatorError) {
    Rsp r;
    opts.first_burst_length = 65536;
    ASSERT_EQ(send(login_flags::csg(0) | (1 << 2), identity() + kv({{"MaxBurstLength", "4096"}}), &r),
              LoginConnection::Outcome::in_progress);
    ASSERT_EQ(send(1 << 2, kv({{"MaxBurstLength", "8192"}}), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::initiator_error);
    EXPECT_EQ(r.bhs.status_class, 2);
    EXPECT_EQ(r.bhs.status_detail, 0);
}

TEST_F(LoginTest, ChapOneWay) {
    host.targets[kIqnT].auth = {false, true, false, 1};
    Rsp r;
    ASSERT_EQ(send(sec_to_op, identity() + kv({{"AuthMethod", "None,CHAP"}}), &r),
              LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.keys["AuthMethod"], "CHAP");
    EXPECT_FALSE(r.bhs.flags & login_flags::transit);
    ASSERT_EQ(send(sec_stay, kv({{"CHAP_A", "7,5"}}), &r), LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.keys["CHAP_A"], "5");
    const auto id = decode_number(r.keys["CHAP_I"]);
    const auto ch = decode_binary(r.keys["CHAP_C"]);
    ASSERT_TRUE(id && ch);
    EXPECT_EQ(ch->size(), 32u);
    const auto resp = chap_md5_response(uint8_t(*id), "alicesecret1", *ch);
    ASSERT_EQ(send(sec_to_op, kv({{"CHAP_N", "alice"}, {"CHAP_R", encode_base64(resp)}}), &r),
              LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.bhs.status_class, 0);
    EXPECT_TRUE(r.bhs.flags & login_flags::transit);
    EXPECT_EQ(r.keys.count("CHAP_R"), 0u);
    ASSERT_EQ(send(op_to_ffp, kv({{"FirstBurstLength", "8192"}}), &r),
              LoginConnection::Outcome::full_feature);
    EXPECT_EQ(conn->negotiated().chap_user, "alice");
}

TEST_F(LoginTest, ChapMutual) {
    host.targets[kIqnT].auth = {false, true, true, 1};
    Rsp r;
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP"}}), &r);
    send(sec_stay, kv({{"CHAP_A", "5"}}), &r);
    const auto id = *decode_number(r.keys["CHAP_I"]);
    const auto ch = *decode_binary(r.keys["CHAP_C"]);
    const std::vector<uint8_t> my_ch = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
    ASSERT_EQ(send(sec_to_op,
                   kv({{"CHAP_N", "alice"},
                       {"CHAP_R", encode_hex(chap_md5_response(uint8_t(id), "alicesecret1", ch))},
                       {"CHAP_I", "77"}, {"CHAP_C", encode_hex(my_ch)}}),
                   &r),
              LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.bhs.status_class, 0);
    EXPECT_EQ(r.keys["CHAP_N"], "tgt");
    EXPECT_EQ(r.keys["CHAP_R"], encode_hex(chap_md5_response(77, "targetsecret1", my_ch)));
}

TEST_F(LoginTest, ChapMutualRequiredButNotAsked) {
    host.targets[kIqnT].auth = {false, true, true, 1};
    Rsp r;
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP"}}), &r);
    send(sec_stay, kv({{"CHAP_A", "5"}}), &r);
    const auto id = *decode_number(r.keys["CHAP_I"]);
    const auto ch = *decode_binary(r.keys["CHAP_C"]);
    EXPECT_EQ(send(sec_to_op,
                   kv({{"CHAP_N", "alice"},
                       {"CHAP_R", encode_hex(chap_md5_response(uint8_t(id), "alicesecret1", ch))}}),
                   &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::authentication_failure);
}

TEST_F(LoginTest, ChapReflectedChallengeRefused) {
    host.targets[kIqnT].auth = {false, true, false, 1};
    Rsp r;
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP"}}), &r);
    send(sec_stay, kv({{"CHAP_A", "5"}}), &r);
    const auto id = *decode_number(r.keys["CHAP_I"]);
    const std::string c = r.keys["CHAP_C"];
    const auto ch = *decode_binary(c);
    EXPECT_EQ(send(sec_to_op,
                   kv({{"CHAP_N", "alice"},
                       {"CHAP_R", encode_hex(chap_md5_response(uint8_t(id), "alicesecret1", ch))},
                       {"CHAP_I", "1"}, {"CHAP_C", c}}),
                   &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::authentication_failure);
}

TEST_F(LoginTest, ChapWrongSecret) {
    host.targets[kIqnT].auth = {false, true, false, 1};
    Rsp r;
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP"}}), &r);
    send(sec_stay, kv({{"CHAP_A", "5"}}), &r);
    const auto id = *decode_number(r.keys["CHAP_I"]);
    const auto ch = *decode_binary(r.keys["CHAP_C"]);
    EXPECT_EQ(send(sec_to_op,
                   kv({{"CHAP_N", "alice"},
                       {"CHAP_R", encode_hex(chap_md5_response(uint8_t(id), "wrongsecret!", ch))}}),
                   &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(r.bhs.status_class, 0x02);
    EXPECT_EQ(r.bhs.status_detail, 0x01);
    EXPECT_EQ(r.bhs.data_segment_length.get(), 0u);
    // Dead afterwards.
    std::vector<uint8_t> out;
    LoginReq q{};
    q.opcode = 0x43;
    EXPECT_EQ(conn->on_pdu(reinterpret_cast<uint8_t*>(&q), {}, out), LoginConnection::Outcome::failed);
    EXPECT_TRUE(out.empty());
}

TEST_F(LoginTest, ChapUnknownUserAndNoMd5) {
    host.targets[kIqnT].auth = {false, true, false, 1};
    Rsp r;
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP"}}), &r);
    EXPECT_EQ(send(sec_stay, kv({{"CHAP_A", "6,7"}}), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::authentication_failure);
    reset();
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP"}}), &r);
    send(sec_stay, kv({{"CHAP_A", "5"}}), &r);
    EXPECT_EQ(send(sec_to_op, kv({{"CHAP_N", "mallory"}, {"CHAP_R", "0x00"}}), &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::authentication_failure);
}

TEST_F(LoginTest, ChapRequiredButSkipped) {
    host.targets[kIqnT].auth = {false, true, false, 1};
    Rsp r;
    EXPECT_EQ(send(op_to_ffp, identity(), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::authentication_failure);
    reset();
    EXPECT_EQ(send(sec_to_op, identity() + kv({{"AuthMethod", "None"}}), &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(r.keys.count("AuthMethod"), 0u);  // failure responses carry no text
    EXPECT_EQ(conn->status(), login_status::authentication_failure);
}

TEST_F(LoginTest, DisableChapPicksNone) {
    host.targets[kIqnT].auth = {true, false, false, 0};
    Rsp r;
    send(sec_to_op, identity() + kv({{"AuthMethod", "CHAP,None"}}), &r);
    EXPECT_EQ(r.keys["AuthMethod"], "None");
    EXPECT_TRUE(r.bhs.flags & login_flags::transit);
}

TEST_F(LoginTest, MissingInitiatorName) {
    Rsp r;
    EXPECT_EQ(send(sec_to_op, kv({{"TargetName", kIqnT}, {"AuthMethod", "None"}}), &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(r.bhs.status_class, 0x02);
    EXPECT_EQ(r.bhs.status_detail, 0x07);
}

TEST_F(LoginTest, MissingTargetName) {
    Rsp r;
    EXPECT_EQ(send(sec_to_op, kv({{"InitiatorName", kIqnI}}), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::missing_parameter);
}

TEST_F(LoginTest, UnknownTarget) {
    Rsp r;
    EXPECT_EQ(send(sec_to_op,
                   kv({{"InitiatorName", kIqnI}, {"TargetName", "iqn.2016-06.io.spdk:nope"}}), &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(r.bhs.status_class, 0x02);
    EXPECT_EQ(r.bhs.status_detail, 0x03);
}

TEST_F(LoginTest, AclDenied) {
    host.deny_acl = true;
    Rsp r;
    EXPECT_EQ(send(sec_to_op, identity(), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::authorization_failure);
}

TEST_F(LoginTest, UnsupportedVersion) {
    Rsp r;
    EXPECT_EQ(send(sec_to_op, identity(), &r, 1), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::unsupported_version);
}

TEST_F(LoginTest, BadSessionType) {
    Rsp r;
    EXPECT_EQ(send(sec_to_op, identity("Weird"), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::session_type_not_supported);
}

TEST_F(LoginTest, SessionDoesNotExist) {
    tsih = 7;
    Rsp r;
    EXPECT_EQ(send(sec_to_op, identity(), &r), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::session_does_not_exist);
    // Joining an existing session: LO keys are Irrelevant, the session's parameters stay.
    reset();
    host.session_exists = true;
    host.existing.max_burst_length = 4096;
    ASSERT_EQ(send(op_to_ffp, identity() + kv({{"MaxBurstLength", "512"}}), &r),
              LoginConnection::Outcome::full_feature);
    EXPECT_EQ(r.keys["MaxBurstLength"], "Irrelevant");
    EXPECT_EQ(r.bhs.tsih.get(), 7u);
    EXPECT_FALSE(conn->negotiated().leading);
    EXPECT_EQ(conn->negotiated().session.max_burst_length, 4096u);
}

TEST_F(LoginTest, StageAndFlagViolations) {
    Rsp r;
    EXPECT_EQ(send(login_flags::transit | login_flags::cont, identity(), &r),
              LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::initiator_error);
    reset();
    EXPECT_EQ(send(login_flags::transit | (1 << 2) | 1, identity(), &r),
              LoginConnection::Outcome::failed);  // NSG == CSG
    reset();
    EXPECT_EQ(send(login_flags::transit | 2, identity(), &r), LoginConnection::Outcome::failed);
    reset();
    EXPECT_EQ(send((3 << 2), identity(), &r), LoginConnection::Outcome::failed);  // CSG 3
    reset();
    send(sec_to_op, identity(), &r);
    EXPECT_EQ(send(sec_to_op, "", &r), LoginConnection::Outcome::failed);  // back to security
}

TEST_F(LoginTest, NonLoginPduDuringLogin) {
    NopOut n{};
    n.opcode = uint8_t(Opcode::nop_out);
    n.itt.set(0x1000);
    std::vector<uint8_t> out;
    EXPECT_EQ(conn->on_pdu(reinterpret_cast<uint8_t*>(&n), {}, out), LoginConnection::Outcome::failed);
    EXPECT_EQ(conn->status(), login_status::invalid_during_login);
}

TEST_F(LoginTest, ContinuedInitiatorText) {
    const std::string all = identity() + kv({{"AuthMethod", "None"}});
    Rsp r;
    const std::string a = all.substr(0, 10), b = all.substr(10);
    ASSERT_EQ(send(login_flags::cont, a, &r), LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.bhs.data_segment_length.get(), 0u);
    EXPECT_FALSE(r.bhs.flags & login_flags::transit);
    ASSERT_EQ(send(sec_to_op, b, &r), LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.keys["AuthMethod"], "None");
    EXPECT_TRUE(r.bhs.flags & login_flags::transit);
}

TEST_F(LoginTest, ContinuedTargetText) {
    // 300 unknown keys of 40 bytes: the NotUnderstood answers exceed 8192 bytes.
    std::string text = identity();
    for (int i = 0; i < 300; ++i) append_key(text, "X-unknown.key" + std::to_string(1000 + i), "v");
    ASSERT_LE(text.size(), LoginConnection::kMaxLoginText);
    Rsp r;
    ASSERT_EQ(send(sec_to_op, text, &r), LoginConnection::Outcome::in_progress);
    EXPECT_TRUE(r.bhs.flags & login_flags::cont);
    EXPECT_FALSE(r.bhs.flags & login_flags::transit);
    EXPECT_EQ(r.bhs.data_segment_length.get(), LoginConnection::kLoginMaxDataSegment);
    std::string collected = r.text;
    ASSERT_EQ(send(sec_to_op, "", &r), LoginConnection::Outcome::in_progress);
    EXPECT_FALSE(r.bhs.flags & login_flags::cont);
    EXPECT_TRUE(r.bhs.flags & login_flags::transit);
    collected += r.text;
    std::vector<KeyValue> kvs;
    ASSERT_EQ(parse_text({reinterpret_cast<const uint8_t*>(collected.data()), collected.size()}, kvs),
              TextError::none);
    EXPECT_EQ(kvs.size(), 300u + 2);  // + TargetAlias, TargetPortalGroupTag
}

TEST_F(LoginTest, DiscoverySessionAndSendTargets) {
    Rsp r;
    ASSERT_EQ(send(sec_to_op,
                   kv({{"InitiatorName", kIqnI}, {"SessionType", "Discovery"}, {"AuthMethod", "None"}}),
                   &r),
              LoginConnection::Outcome::in_progress);
    EXPECT_EQ(r.keys.count("TargetPortalGroupTag"), 0u);
    ASSERT_EQ(send(op_to_ffp,
                   kv({{"HeaderDigest", "None"}, {"MaxBurstLength", "1024"},
                       {"MaxRecvDataSegmentLength", "512"}}),
                   &r),
              LoginConnection::Outcome::full_feature);
    EXPECT_EQ(r.keys["MaxBurstLength"], "Irrelevant");
    Negotiated n = conn->negotiated();
    EXPECT_EQ(n.session_type, SessionType::discovery);
    host.targets["iqn.2016-06.io.spdk:disk2"] = TargetInfo{"iqn.2016-06.io.spdk:disk2", "", {}};

    TextNegotiator tn(&host, &n);
    TextReq q{};
    q.opcode = uint8_t(Opcode::text_req) | kImmediateBit;
    q.flags = text_flags::final;
    q.itt.set(9);
    q.ttt.set(kReservedTag);
    const std::string st = kv({{"SendTargets", "All"}});
    std::vector<uint8_t> out;
    ASSERT_TRUE(tn.on_pdu(reinterpret_cast<uint8_t*>(&q),
                          {reinterpret_cast<const uint8_t*>(st.data()), st.size()}, out, {}));
    // Two targets x (name + 2 addresses) is more than 512 bytes? No: ~170 bytes, one PDU.
    auto rsp = bhs_as<TextRsp>(out.data());
    EXPECT_EQ(rsp.opcode, uint8_t(Opcode::text_rsp));
    EXPECT_EQ(rsp.flags, text_flags::final);
    EXPECT_EQ(rsp.itt.get(), 9u);
    EXPECT_EQ(rsp.ttt.get(), kReservedTag);
    const std::string text(reinterpret_cast<const char*>(out.data()) + 48, rsp.data_segment_length.get());
    EXPECT_EQ(text, "TargetName=iqn.2016-06.io.spdk:disk1\0TargetAddress=10.0.0.1:3260,1\0"
                    "TargetAddress=[fe80::1]:3260,1\0TargetName=iqn.2016-06.io.spdk:disk2\0"
                    "TargetAddress=10.0.0.1:3260,1\0TargetAddress=[fe80::1]:3260,1\0"s);
}

TEST(IscsiSendTargets, LongResponseContinues) {
    FakeHost host;
    for (int i = 0; i < 20; ++i) {
        const std::string name = "iqn.2016-06.io.spdk:disk" + std::to_string(100 + i);
        host.targets[name] = TargetInfo{name, "", {}};
    }
    Negotiated n;
    n.session_type = SessionType::discovery;
    n.initiator_mrdsl = 512;
    TextNegotiator tn(&host, &n);
    TextReq q{};
    q.opcode = uint8_t(Opcode::text_req);
    q.flags = text_flags::final;
    q.ttt.set(kReservedTag);
    const std::string st = kv({{"SendTargets", "All"}});
    std::string all;
    std::vector<uint8_t> out;
    ASSERT_TRUE(tn.on_pdu(reinterpret_cast<uint8_t*>(&q),
                          {reinterpret_cast<const uint8_t*>(st.data()), st.size()}, out, {}));
    int pieces = 1;
    while (true) {
        const auto rsp = bhs_as<TextRsp>(out.data());
        const uint32_t dl = rsp.data_segment_length.get();
        ASSERT_LE(dl, 512u);
        all.append(reinterpret_cast<const char*>(out.data()) + 48, dl);
        if (rsp.flags & text_flags::final) {
            EXPECT_EQ(rsp.ttt.get(), kReservedTag);
            break;
        }
        EXPECT_TRUE(rsp.flags & text_flags::cont);
        ASSERT_NE(rsp.ttt.get(), kReservedTag);
        q.ttt = rsp.ttt;  // continue: empty request echoing the TTT
        out.clear();
        ASSERT_TRUE(tn.on_pdu(reinterpret_cast<uint8_t*>(&q), {}, out, {}));
        ++pieces;
    }
    EXPECT_GT(pieces, 2);
    std::vector<KeyValue> kvs;
    ASSERT_EQ(parse_text({reinterpret_cast<const uint8_t*>(all.data()), all.size()}, kvs, true),
              TextError::none);
    EXPECT_EQ(kvs.size(), 60u);
    // A wrong TTT gets a Reject.
    q.ttt.set(12345);
    out.clear();
    ASSERT_TRUE(tn.on_pdu(reinterpret_cast<uint8_t*>(&q), {}, out, {}));
    EXPECT_EQ(out[0], uint8_t(Opcode::reject));
}

TEST(IscsiSendTargets, ContinuedInitiatorText) {
    FakeHost host;
    host.targets[kIqnT] = TargetInfo{kIqnT, "", {}};
    Negotiated n;
    n.session_type = SessionType::discovery;
    TextNegotiator tn(&host, &n);
    const std::string st = kv({{"SendTargets", "All"}});
    TextReq q{};
    q.opcode = uint8_t(Opcode::text_req);
    q.flags = text_flags::cont;
    q.ttt.set(kReservedTag);
    std::vector<uint8_t> out;
    ASSERT_TRUE(tn.on_pdu(reinterpret_cast<uint8_t*>(&q),
                          {reinterpret_cast<const uint8_t*>(st.data()), 5}, out, {}));
    auto rsp = bhs_as<TextRsp>(out.data());
    EXPECT_EQ(rsp.opcode, uint8_t(Opcode::text_rsp));
    EXPECT_EQ(rsp.flags, 0);  // not final, no text
    EXPECT_EQ(rsp.data_segment_length.get(), 0u);
    ASSERT_NE(rsp.ttt.get(), kReservedTag);
    q.flags = text_flags::final;
    q.ttt = rsp.ttt;
    out.clear();
    ASSERT_TRUE(tn.on_pdu(reinterpret_cast<uint8_t*>(&q),
                          {reinterpret_cast<const uint8_t*>(st.data()) + 5, st.size() - 5}, out, {}));
    rsp = bhs_as<TextRsp>(out.data());
    EXPECT_EQ(rsp.flags, text_flags::final);
    const std::string text(reinterpret_cast<const char*>(out.data()) + 48, rsp.data_segment_length.get());
    EXPECT_EQ(text, "TargetName="s + kIqnT + "\0TargetAddress=10.0.0.1:3260,1\0"
                    "TargetAddress=[fe80::1]:3260,1\0"s);
}

TEST(IscsiSendTargets, NormalSessionListsItsTarget) {
    std::vector<SendTargetsEntry> t = {{"iqn.a:1", {"1.1.1.1:3260,1"}}, {"iqn.a:2", {"1.1.1.1:3260,1"}}};
    EXPECT_EQ(build_send_targets(t, "All", false, "iqn.a:2"),
              "TargetName=iqn.a:2\0TargetAddress=1.1.1.1:3260,1\0"s);
    EXPECT_EQ(build_send_targets(t, "", false, "iqn.a:2"),
              "TargetName=iqn.a:2\0TargetAddress=1.1.1.1:3260,1\0"s);
    EXPECT_EQ(build_send_targets(t, "iqn.a:1", true, ""),
              "TargetName=iqn.a:1\0TargetAddress=1.1.1.1:3260,1\0"s);
    EXPECT_EQ(build_send_targets(t, "iqn.a:3", true, ""), "");
}

}  // namespace
}  // namespace strata::iscsi
