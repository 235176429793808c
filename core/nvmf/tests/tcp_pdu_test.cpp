// The NVMe/TCP target's PDU receiver: every malformed header gets its FES/FEI, sequence rules,
// digests, data placement, and byte-at-a-time feeding equal to whole-buffer feeding.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <strata/base/crc.h>
#include <strata/nvmf/internal/tcp_pdu.h>

namespace {

namespace pdu = strata::nvme::spec::tcp;
using strata::nvmf::tcp::PduReceiver;
using strata::nvmf::tcp::RecvConfig;
using strata::nvmf::tcp::RecvEvent;

using Bytes = std::vector<uint8_t>;

template <class T>
void append(Bytes& b, const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
}
void append_le32(Bytes& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

Bytes icreq(uint16_t pfv = 0, uint8_t hpda = 0, uint8_t dgst = 0) {
    pdu::IcReq r{};
    r.ch = {static_cast<uint8_t>(pdu::PduType::ic_req), 0, 128, 0, 128};
    r.pfv = pfv;
    r.hpda = hpda;
    r.dgst = dgst;
    Bytes b;
    append(b, r);
    return b;
}

// A CapsuleCmd with `data` in-capsule bytes; digests per flags, PDO = header end.
Bytes capsule(uint32_t data, bool hdgst = false, bool ddgst = false, uint8_t fill = 0xAB) {
    pdu::CapsuleCmd c{};
    const uint32_t hd = hdgst ? 4 : 0;
    const uint32_t dd = (ddgst && data) ? 4 : 0;
    c.ch = {static_cast<uint8_t>(pdu::PduType::capsule_cmd),
            static_cast<uint8_t>((hdgst ? pdu::flags::hdgstf : 0) | (dd ? pdu::flags::ddgstf : 0)),
            72, static_cast<uint8_t>(data ? 72 + hd : 0), 72 + hd + data + dd};
    c.sqe.opc = 0x01;
    c.sqe.cid = 7;
    Bytes b;
    append(b, c);
    if (hdgst) append_le32(b, strata::crc32c(0, b.data(), 72));
    Bytes d(data, fill);
    b.insert(b.end(), d.begin(), d.end());
    if (dd) append_le32(b, strata::crc32c(0, d.data(), d.size()));
    return b;
}

Bytes h2cdata(uint32_t datal, uint32_t data, uint16_t ttag = 1) {
    pdu::DataPdu h{};
    h.ch = {static_cast<uint8_t>(pdu::PduType::h2c_data), pdu::flags::last_pdu, 24, 24,
            24 + data};
    h.cccid = 7;
    h.ttag = ttag;
    h.datal = datal;
    Bytes b;
    append(b, h);
    b.resize(b.size() + data, 0x5A);
    return b;
}

struct Outcome {
    std::vector<RecvEvent> events;
    pdu::Fes fes{};
    uint32_t fei = 0;
    Bytes data;  // what was placed
};

// Feeds bytes (chunk at a time), placing data in a scratch buffer.
Outcome run(PduReceiver& rx, const Bytes& in, size_t chunk = SIZE_MAX) {
    Outcome o;
    Bytes scratch(1 << 20);
    iovec iov{scratch.data(), scratch.size()};
    size_t off = 0;
    size_t placed = 0;
    while (off < in.size()) {
        const size_t n = std::min(chunk, in.size() - off);
        size_t used = 0;
        while (used < n) {
            RecvEvent ev;
            used += rx.feed(in.data() + off + used, n - used, &ev);
            if (ev == RecvEvent::none) break;
            o.events.push_back(ev);
            if (ev == RecvEvent::error) {
                o.fes = rx.fes();
                o.fei = rx.fei();
                return o;
            }
            if (ev == RecvEvent::header) {
                placed = rx.data_length();
                rx.set_data_destination(&iov, 1);
            }
            if (ev == RecvEvent::pdu && placed) {
                o.data.insert(o.data.end(), scratch.begin(), scratch.begin() + placed);
                placed = 0;
            }
        }
        off += n;
    }
    return o;
}

PduReceiver after_ic(RecvConfig cfg = {}) {
    PduReceiver rx(cfg);
    auto o = run(rx, icreq());
    EXPECT_EQ(o.events, std::vector<RecvEvent>{RecvEvent::pdu});
    EXPECT_TRUE(rx.ic_received());
    return rx;
}

void expect_error(PduReceiver rx, const Bytes& b, pdu::Fes fes, uint32_t fei) {
    auto o = run(rx, b);
    ASSERT_FALSE(o.events.empty());
    EXPECT_EQ(o.events.back(), RecvEvent::error);
    EXPECT_EQ(o.fes, fes) << pdu::fes_name(o.fes);
    EXPECT_EQ(o.fei, fei);
}

TEST(NvmfTcpPdu, IcReqThenCapsule) {
    PduReceiver rx;
    auto o = run(rx, icreq(0, 3, pdu::dgst::hdgst_enable));
    ASSERT_EQ(o.events, std::vector<RecvEvent>{RecvEvent::pdu});
    const auto req = rx.header_as<pdu::IcReq>();
    EXPECT_EQ(req.hpda, 3);
    EXPECT_EQ(req.dgst, pdu::dgst::hdgst_enable);
    o = run(rx, capsule(0));
    EXPECT_EQ(o.events, std::vector<RecvEvent>{RecvEvent::pdu});
    EXPECT_EQ(rx.header_as<pdu::CapsuleCmd>().sqe.cid, 7);
    o = run(rx, capsule(512));
    EXPECT_EQ(o.events, (std::vector<RecvEvent>{RecvEvent::header, RecvEvent::pdu}));
    EXPECT_EQ(o.data, Bytes(512, 0xAB));
    EXPECT_EQ(rx.pdus_received(), 3u);
    EXPECT_TRUE(rx.at_pdu_boundary());
}

TEST(NvmfTcpPdu, SequenceRules) {
    // Anything before the ICReq, a second ICReq.
    expect_error(PduReceiver{}, capsule(0), pdu::Fes::pdu_sequence_error, 0);
    expect_error(PduReceiver{}, h2cdata(4, 4), pdu::Fes::pdu_sequence_error, 0);
    expect_error(after_ic(), icreq(), pdu::Fes::pdu_sequence_error, 0);
    // An H2CTermReq is accepted before the ICReq too.
    pdu::TermReq t{};
    t.ch = {static_cast<uint8_t>(pdu::PduType::h2c_term_req), 0, 24, 0, 24};
    Bytes b;
    append(b, t);
    PduReceiver rx;
    EXPECT_EQ(run(rx, b).events, std::vector<RecvEvent>{RecvEvent::pdu});
}

TEST(NvmfTcpPdu, InvalidType) {
    for (uint8_t type : {uint8_t{1}, uint8_t{3}, uint8_t{5}, uint8_t{7}, uint8_t{8}, uint8_t{9},
                         uint8_t{0x0A}, uint8_t{0xFF}}) {
        SCOPED_TRACE(type);
        Bytes b = capsule(0);
        b[0] = type;
        expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::pdu_type);
        expect_error(PduReceiver{}, b, pdu::Fes::invalid_header_field, pdu::fei::pdu_type);
    }
}

TEST(NvmfTcpPdu, InvalidHlenPlenPdo) {
    Bytes b = capsule(0);
    b[2] = 24;
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::hlen);
    b = icreq();
    b[2] = 127;
    expect_error(PduReceiver{}, b, pdu::Fes::invalid_header_field, pdu::fei::hlen);
    b = icreq();
    b[4] = 129;
    expect_error(PduReceiver{}, b, pdu::Fes::invalid_header_field, pdu::fei::plen);
    // plen shorter than the header.
    b = capsule(0);
    b[4] = 70;
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::plen);
    // PDO inside the header, misaligned, or past the data.
    b = capsule(64);
    b[3] = 64;
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::pdo);
    b = capsule(64);
    b[3] = 74;
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::pdo);
    b = capsule(64);
    b[3] = 200;
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::pdo);
    // With CPDA 7 (32-byte alignment), PDO 72 is misaligned, 96 is fine.
    RecvConfig cfg;
    cfg.cpda = 7;
    b = capsule(64);
    expect_error(after_ic(cfg), b, pdu::Fes::invalid_header_field, pdu::fei::pdo);
    pdu::CapsuleCmd c{};
    c.ch = {4, 0, 72, 96, 96 + 64};
    Bytes ok;
    append(ok, c);
    ok.resize(96 + 64, 0x11);
    auto rx = after_ic(cfg);
    auto o = run(rx, ok);
    EXPECT_EQ(o.events.back(), RecvEvent::pdu);
    EXPECT_EQ(o.data, Bytes(64, 0x11));  // the padding is skipped
}

TEST(NvmfTcpPdu, TermReqLength) {
    pdu::TermReq t{};
    t.ch = {static_cast<uint8_t>(pdu::PduType::h2c_term_req), 0, 24, 0, 153};
    Bytes b;
    append(b, t);
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::plen);
    t.ch.plen = 24 + 72;
    b.clear();
    append(b, t);
    b.resize(24 + 72);
    auto rx = after_ic();
    auto o = run(rx, b);
    EXPECT_EQ(o.events.back(), RecvEvent::pdu);  // its data is discarded by the receiver
}

TEST(NvmfTcpPdu, IcReqParameters) {
    expect_error(PduReceiver{}, icreq(1), pdu::Fes::unsupported_parameter, pdu::fei::pfv);
    expect_error(PduReceiver{}, icreq(0, 32), pdu::Fes::unsupported_parameter, pdu::fei::hpda);
    expect_error(PduReceiver{}, icreq(0, 0, 0x4), pdu::Fes::unsupported_parameter,
                 pdu::fei::dgst);
    // An ICReq with a digest flag in CH.
    Bytes b = icreq();
    b[1] = pdu::flags::hdgstf;
    expect_error(PduReceiver{}, b, pdu::Fes::invalid_header_field, pdu::fei::flags);
}

TEST(NvmfTcpPdu, DigestFlagsMustMatchNegotiation) {
    // Header digest flag without negotiation, and missing with it.
    expect_error(after_ic(), capsule(0, true), pdu::Fes::invalid_header_field, pdu::fei::flags);
    RecvConfig cfg;
    cfg.hdgst = true;
    expect_error(after_ic(cfg), capsule(0), pdu::Fes::invalid_header_field, pdu::fei::flags);
    // Data digest flag without negotiation, missing with it, and on a PDU without data.
    expect_error(after_ic(), capsule(8, false, true), pdu::Fes::invalid_header_field,
                 pdu::fei::flags);
    cfg = {};
    cfg.ddgst = true;
    expect_error(after_ic(cfg), capsule(8), pdu::Fes::invalid_header_field, pdu::fei::flags);
    Bytes b = capsule(0);
    b[1] = pdu::flags::ddgstf;
    expect_error(after_ic(cfg), b, pdu::Fes::invalid_header_field, pdu::fei::flags);
    // Unknown flag bits (LAST_PDU is only for data PDUs).
    b = capsule(0);
    b[1] = pdu::flags::last_pdu;
    expect_error(after_ic(), b, pdu::Fes::invalid_header_field, pdu::fei::flags);
}

TEST(NvmfTcpPdu, HeaderAndDataDigests) {
    RecvConfig cfg;
    cfg.hdgst = true;
    cfg.ddgst = true;
    auto rx = after_ic(cfg);
    auto o = run(rx, capsule(100, true, true));
    EXPECT_EQ(o.events.back(), RecvEvent::pdu);
    EXPECT_TRUE(rx.data_digest_ok());
    EXPECT_EQ(o.data, Bytes(100, 0xAB));
    // A flipped header byte: header digest error, and the offending header (72 bytes, no
    // digest) is what the C2HTermReq carries.
    Bytes b = capsule(100, true, true);
    b[10] ^= 1;
    auto rx2 = after_ic(cfg);
    o = run(rx2, b);
    EXPECT_EQ(o.fes, pdu::Fes::header_digest_error);
    EXPECT_EQ(rx2.error_header_length(), 72u);
    // A flipped data byte: not fatal, the PDU arrives with data_digest_ok() false and the
    // stream stays in step.
    b = capsule(100, true, true);
    b[80] ^= 1;
    b = [&] {
        Bytes both = b;
        Bytes next = capsule(0, true);
        both.insert(both.end(), next.begin(), next.end());
        return both;
    }();
    auto rx3 = after_ic(cfg);
    RecvEvent ev;
    size_t used = 0;
    std::vector<uint8_t> scratch(100);
    iovec iov{scratch.data(), scratch.size()};
    used += rx3.feed(b.data(), b.size(), &ev);
    ASSERT_EQ(ev, RecvEvent::header);
    rx3.set_data_destination(&iov, 1);
    used += rx3.feed(b.data() + used, b.size() - used, &ev);
    ASSERT_EQ(ev, RecvEvent::pdu);
    EXPECT_FALSE(rx3.data_digest_ok());
    used += rx3.feed(b.data() + used, b.size() - used, &ev);
    EXPECT_EQ(ev, RecvEvent::pdu);
    EXPECT_EQ(used, b.size());
}

TEST(NvmfTcpPdu, DataDigestDeferredFromTheThresholdOn) {
    // ddgst_defer_min: PDUs with at least that much data leave the check to the caller, with
    // the received DDGST; smaller ones are checked here as before.
    RecvConfig cfg;
    cfg.ddgst = true;
    cfg.ddgst_defer_min = 100;
    auto rx = after_ic(cfg);
    Bytes b = capsule(100, false, true);
    b[80] ^= 1;  // a corrupted data byte: the receiver does not notice, the caller must
    auto o = run(rx, b);
    EXPECT_EQ(o.events.back(), RecvEvent::pdu);
    EXPECT_TRUE(rx.data_digest_deferred());
    EXPECT_TRUE(rx.data_digest_ok());
    Bytes placed(100, 0xAB);
    placed[80 - 72] ^= 1;
    EXPECT_EQ(o.data, placed);
    EXPECT_EQ(rx.data_digest(), strata::crc32c(0, Bytes(100, 0xAB).data(), 100));
    EXPECT_NE(rx.data_digest(), strata::crc32c(0, o.data.data(), o.data.size()));
    // Below the threshold: checked here.
    b = capsule(99, false, true);
    b[80] ^= 1;
    o = run(rx, b);
    EXPECT_EQ(o.events.back(), RecvEvent::pdu);
    EXPECT_FALSE(rx.data_digest_deferred());
    EXPECT_FALSE(rx.data_digest_ok());
}

TEST(NvmfTcpPdu, DataLimits) {
    RecvConfig cfg;
    cfg.max_in_capsule = 4096;
    cfg.maxh2cdata = 8192;
    expect_error(after_ic(cfg), capsule(4100), pdu::Fes::data_limit_exceeded, 0);
    expect_error(after_ic(cfg), h2cdata(8196, 8196), pdu::Fes::data_limit_exceeded, 0);
    expect_error(after_ic(cfg), h2cdata(100, 96), pdu::Fes::invalid_header_field,
                 pdu::fei::datal);
    expect_error(after_ic(cfg), h2cdata(0, 0), pdu::Fes::invalid_header_field, pdu::fei::datal);
    auto rx = after_ic(cfg);
    auto o = run(rx, h2cdata(8192, 8192));
    EXPECT_EQ(o.events.back(), RecvEvent::pdu);
    EXPECT_EQ(rx.header_as<pdu::DataPdu>().ttag, 1);
}

TEST(NvmfTcpPdu, ByteAtATimeEqualsWhole) {
    RecvConfig cfg;
    cfg.hdgst = true;
    cfg.ddgst = true;
    Bytes stream = capsule(300, true, true, 0x33);
    Bytes more = capsule(0, true);
    stream.insert(stream.end(), more.begin(), more.end());
    auto whole_rx = after_ic(cfg);
    auto byte_rx = after_ic(cfg);
    auto a = run(whole_rx, stream);
    auto b = run(byte_rx, stream, 1);
    EXPECT_EQ(a.events, b.events);
    EXPECT_EQ(a.data, b.data);
    EXPECT_EQ(b.data, Bytes(300, 0x33));
    EXPECT_TRUE(byte_rx.at_pdu_boundary());
}

TEST(NvmfTcpPdu, DirectPlacement) {
    auto rx = after_ic();
    Bytes b = capsule(1000, false, false, 0x77);
    RecvEvent ev;
    size_t used = rx.feed(b.data(), 72, &ev);
    ASSERT_EQ(ev, RecvEvent::header);
    ASSERT_EQ(used, 72u);
    Bytes dst(1000);
    iovec iov[2] = {{dst.data(), 600}, {dst.data() + 600, 400}};
    rx.set_data_destination(iov, 2);
    ASSERT_TRUE(rx.in_data());
    iovec rem[4];
    ASSERT_EQ(rx.data_iov_remaining(rem, 4), 2u);
    // "Read from the socket" straight into the destination.
    std::memcpy(dst.data(), b.data() + 72, 1000);
    rx.data_received(1000);
    used = rx.feed(nullptr, 0, &ev);
    EXPECT_EQ(ev, RecvEvent::pdu);
    EXPECT_EQ(dst, Bytes(1000, 0x77));
}

TEST(NvmfTcpPdu, DeadAfterError) {
    PduReceiver rx;
    Bytes b = capsule(0);
    RecvEvent ev;
    rx.feed(b.data(), b.size(), &ev);
    ASSERT_EQ(ev, RecvEvent::error);
    EXPECT_TRUE(rx.failed());
    EXPECT_EQ(rx.feed(b.data(), b.size(), &ev), 0u);
    EXPECT_EQ(ev, RecvEvent::error);
}

}  // namespace

namespace {

// Arbitrary streams (random bytes after a valid ICReq, and mutated valid PDUs): the receiver
// never reads or writes out of bounds (ASan/UBSan builds check), always makes progress, and
// once it reports an error it stays failed.
TEST(NvmfTcpPdu, ArbitraryStreamsNeverWedge) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    auto next = [&] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    for (int round = 0; round < 2000; ++round) {
        RecvConfig cfg;
        cfg.hdgst = next() & 1;
        cfg.ddgst = next() & 1;
        cfg.cpda = static_cast<uint32_t>(next() % 4);
        cfg.max_in_capsule = 4096;
        cfg.maxh2cdata = 8192;
        PduReceiver rx(cfg);
        Bytes stream = (round & 1) ? icreq() : Bytes{};
        Bytes body = capsule(static_cast<uint32_t>(next() % 600), cfg.hdgst, cfg.ddgst);
        for (int k = 0; k < 4; ++k) body[next() % body.size()] = static_cast<uint8_t>(next());
        stream.insert(stream.end(), body.begin(), body.end());
        for (int k = 0; k < 200; ++k) stream.push_back(static_cast<uint8_t>(next()));
        Bytes scratch(1 << 17);
        iovec iov{scratch.data(), scratch.size()};
        size_t off = 0;
        bool failed = false;
        int guard = 0;
        while (off < stream.size() && ++guard < 100000) {
            const size_t chunk = 1 + next() % 97;
            RecvEvent ev;
            const size_t n = rx.feed(stream.data() + off, std::min(chunk, stream.size() - off), &ev);
            off += n;
            if (ev == RecvEvent::error) {
                failed = true;
                EXPECT_LE(rx.error_header_length(), 128u);
                break;
            }
            if (ev == RecvEvent::header) {
                ASSERT_LE(rx.data_length(), scratch.size());
                rx.set_data_destination(&iov, 1);
            }
            ASSERT_TRUE(n > 0 || ev != RecvEvent::none) << "no progress";
        }
        ASSERT_LT(guard, 100000);
        if (failed) {
            RecvEvent ev;
            EXPECT_EQ(rx.feed(stream.data(), stream.size(), &ev), 0u);
            EXPECT_EQ(ev, RecvEvent::error);
        }
    }
}

}  // namespace
