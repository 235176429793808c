// Fuzz target: the iSCSI login state machine (iscsi::LoginConnection) and full-feature text
// negotiation (iscsi::TextNegotiator) fed arbitrary PDUs, as a connection would: the byte
// stream goes through the PduReceiver (no digests during login, MaxRecvDataSegmentLength
// 8192), each PDU to the login until it reaches full feature phase, then Text Requests to the
// TextNegotiator (other opcodes are skipped). Invariants:
//   - every login PDU gets exactly one Login Response (a whole PDU, data <= 8192 bytes, padded)
//     until the login fails, and nothing after it failed
//   - a failed login's response has a non-zero Status-Class and no data; success ends with
//     T=1, NSG=3 and a non-zero TSIH for a new session
//   - StatSN advances by one per response
//   - every Text Response / Reject is a whole PDU within the initiator's MaxRecvDataSegmentLength
//
// Input: byte 0 = policy: bits 0..1 target auth (none, disable_chap, require_chap,
// require+mutual), bits 2..3 discovery auth (same), bit 4 secrets have a mutual part;
// byte 1 = PRNG seed for CHAP challenges; the rest is the stream.
// Seeds: fuzz/corpus/gen_iscsi.py. STRATA_FUZZ_TRACE=1 prints every response's status.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <vector>

#include <strata/iscsi/internal/login.h>

namespace {

using namespace strata;
using namespace strata::iscsi;

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c);   \
            std::abort();                                                                \
        }                                                                                \
    } while (0)

AuthPolicy policy_of(uint32_t v) {
    AuthPolicy p;
    p.chap_group = 1;
    p.disable_chap = v == 1;
    p.require_chap = v >= 2;
    p.mutual_chap = v == 3;
    return p;
}

class Host : public LoginHost {
public:
    AuthPolicy target_auth, disc_auth;
    bool mutual_secret = false;
    uint16_t next_tsih = 1;
    LoginStatus find_target(std::string_view name, std::string_view, TargetInfo* out) override {
        if (name != "iqn.2016-06.io.spdk:disk1") return login_status::not_found;
        *out = {std::string(name), "disk1", target_auth};
        return login_status::success;
    }
    AuthPolicy discovery_auth() override { return disc_auth; }
    LoginStatus join_session(const Isid&, uint16_t tsih, std::string_view, std::string_view,
                             SessionParams*) override {
        return tsih == 1 ? login_status::success : login_status::session_does_not_exist;
    }
    uint16_t new_session(const Isid&, std::string_view, std::string_view, SessionType) override {
        return next_tsih++;
    }
    std::vector<SendTargetsEntry> send_targets(std::string_view) override {
        return {{"iqn.2016-06.io.spdk:disk1", {"127.0.0.1:3260,1"}},
                {"iqn.2016-06.io.spdk:disk2", {"[::1]:3260,1"}}};
    }
    bool lookup(int32_t, std::string_view user, ChapSecret* out) const override {
        if (user != "user") return false;
        *out = {"user", "secretsecret", mutual_secret ? "tgt" : "", mutual_secret ? "tgtsecret123" : ""};
        return true;
    }
};

// Checks `out` holds whole PDUs of the given opcodes; returns how many.
int check_pdus(const std::vector<uint8_t>& out, uint32_t max_data, uint32_t* stat_sn) {
    size_t off = 0;
    int n = 0;
    while (off < out.size()) {
        CHECK(out.size() - off >= kBhsSize);
        const Bhs b = bhs_as<Bhs>(out.data() + off);
        const uint32_t dl = b.data_segment_length.get();
        CHECK(dl <= max_data);
        CHECK(b.total_ahs_length == 0);
        CHECK(out.size() - off >= kBhsSize + dl + pad4(dl));
        const uint32_t sn = Be32{{out[off + 24], out[off + 25], out[off + 26], out[off + 27]}}.get();
        CHECK(sn == *stat_sn);
        ++*stat_sn;
        off += kBhsSize + dl + pad4(dl);
        ++n;
    }
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    static const bool trace = std::getenv("STRATA_FUZZ_TRACE") != nullptr;
    Host host;
    host.target_auth = policy_of(data[0] & 3);
    host.disc_auth = policy_of((data[0] >> 2) & 3);
    host.mutual_secret = data[0] & 16;
    TargetOptions opts;
    Prng rng(data[1]);
    LoginConfig cfg{&opts, &host, &rng, 1};
    LoginConnection login(cfg);
    Negotiated neg;
    TextNegotiator text(&host, &neg);
    bool ffp = false, failed = false, have_sn = false;
    uint32_t stat_sn = 0;

    PduReceiver rx({false, false, 8192});
    std::vector<uint8_t> buf, out;
    iovec iov{};
    const uint8_t* p = data + 2;
    size_t left = size - 2;
    while (left > 0) {
        RecvEvent ev;
        const size_t n = rx.feed(p, left, &ev);
        p += n;
        left -= n;
        if (ev == RecvEvent::none || ev == RecvEvent::error) break;
        if (ev == RecvEvent::header) {
            buf.assign(rx.data_length(), 0);
            iov = {buf.data(), buf.size()};
            rx.set_data_destination(&iov, 1);
            continue;
        }
        const std::span<const uint8_t> seg(buf.data(), rx.data_length());
        out.clear();
        if (!ffp) {
            if (failed) break;
            if (!have_sn && rx.bhs().op() == Opcode::login_req) {
                stat_sn = bhs_as<LoginReq>(rx.header()).exp_stat_sn.get();
                have_sn = true;
            }
            const auto o = login.on_pdu(rx.header(), seg, out);
            if (!have_sn) {  // the first PDU was not a Login Request: whatever StatSN it chose
                CHECK(out.size() >= kBhsSize);
                stat_sn = bhs_as<LoginRsp>(out.data()).stat_sn.get();
                have_sn = true;
            }
            CHECK(check_pdus(out, LoginConnection::kLoginMaxDataSegment, &stat_sn) == 1);
            const LoginRsp r = bhs_as<LoginRsp>(out.data());
            CHECK((r.opcode & kOpcodeMask) == uint8_t(Opcode::login_rsp));
            if (trace)
                std::fprintf(stderr, "login rsp: status %02x/%02x flags %02x data %u (%s)\n",
                             r.status_class, r.status_detail, r.flags,
                             r.data_segment_length.get(), login.failure_reason());
            if (o == LoginConnection::Outcome::failed) {
                CHECK(r.status_class != 0 && r.data_segment_length.get() == 0);
                CHECK(!login.status().ok());
                failed = true;
                std::vector<uint8_t> again;
                CHECK(login.on_pdu(rx.header(), seg, again) == LoginConnection::Outcome::failed);
                CHECK(again.empty());
            } else {
                CHECK(r.status_class == 0);
            }
            if (o == LoginConnection::Outcome::full_feature) {
                CHECK((r.flags & login_flags::transit) && login_flags::nsg(r.flags) == 3);
                CHECK(r.tsih.get() != 0);
                neg = login.negotiated();
                CHECK(neg.sn.stat_sn == stat_sn);
                ffp = true;
            }
            continue;
        }
        if (rx.bhs().op() != Opcode::text_req) continue;
        const bool ok = text.on_pdu(rx.header(), seg, out, {});
        if (trace && !out.empty())
            std::fprintf(stderr, "text rsp: opcode %02x flags %02x data %u\n", out[0], out[1],
                         bhs_as<Bhs>(out.data()).data_segment_length.get());
        CHECK(ok);
        CHECK(check_pdus(out, std::max<uint32_t>(512, neg.initiator_mrdsl), &stat_sn) == 1);
    }
    return 0;
}
