// core/iscsi PDU layer: BHS byte layouts, AHS, padding, digests, the incremental receiver
// (split at every byte boundary) and the builder.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <strata/base/crc.h>
#include <strata/iscsi/internal/pdu.h>

namespace strata::iscsi {
namespace {

std::vector<uint8_t> scsi_write_pdu(uint32_t data_len, uint8_t fill, PduDigests dg,
                                    std::vector<uint8_t> ahs = {}) {
    ScsiCmd c{};
    c.opcode = uint8_t(Opcode::scsi_cmd);
    c.flags = scsi_flags::final | scsi_flags::write;
    c.lun.set(uint64_t(1) << 48);
    c.itt.set(0x11223344);
    c.expected_data_transfer_length.set(data_len);
    c.cmd_sn.set(7);
    c.cdb[0] = 0x2a;
    std::vector<uint8_t> data(data_len, fill);
    for (uint32_t i = 0; i < data_len; ++i) data[i] = uint8_t(fill + i);
    std::vector<uint8_t> out;
    uint8_t hdr[PduReceiver::kMaxHeader];
    const uint32_t hn = build_header(hdr, &c, ahs.data(), uint32_t(ahs.size()), data_len, dg);
    out.assign(hdr, hdr + hn);
    out.insert(out.end(), data.begin(), data.end());
    out.resize(out.size() + pad4(data_len), 0);
    if (dg.data && data_len) {
        const iovec v{data.data(), data.size()};
        const uint32_t d = data_digest(&v, 1, data_len);
        for (int i = 0; i < 4; ++i) out.push_back(uint8_t(d >> (8 * i)));
    }
    return out;
}

TEST(IscsiPdu, BigEndianFields) {
    LoginRsp r{};
    r.tsih.set(0x1234);
    r.stat_sn.set(0xA1B2C3D4);
    r.data_segment_length.set(0x0abcde);
    const auto* b = reinterpret_cast<const uint8_t*>(&r);
    EXPECT_EQ(b[14], 0x12);
    EXPECT_EQ(b[15], 0x34);
    EXPECT_EQ(b[24], 0xA1);
    EXPECT_EQ(b[27], 0xD4);
    EXPECT_EQ(b[5], 0x0a);
    EXPECT_EQ(b[7], 0xde);
    EXPECT_EQ(r.data_segment_length.get(), 0x0abcdeu);
    Be64 lun{};
    lun.set(0x0001000000000000ull);
    EXPECT_EQ(lun.b[1], 0x01);
    EXPECT_EQ(lun.get(), 0x0001000000000000ull);
}

TEST(IscsiPdu, Padding) {
    EXPECT_EQ(pad4(0), 0u);
    EXPECT_EQ(pad4(1), 3u);
    EXPECT_EQ(pad4(2), 2u);
    EXPECT_EQ(pad4(3), 1u);
    EXPECT_EQ(pad4(4), 0u);
    EXPECT_EQ(pad4(8191), 1u);
}

TEST(IscsiPdu, OpcodeClasses) {
    for (uint8_t op : {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10})
        EXPECT_TRUE(opcode_from_initiator(op)) << int(op);
    for (uint8_t op : {0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3f, 0x07, 0x1c})
        EXPECT_FALSE(opcode_from_initiator(op)) << int(op);
    EXPECT_TRUE(opcode_from_initiator(0x43));  // immediate Login
    EXPECT_STREQ(opcode_name(0x31), "R2T");
}

TEST(IscsiPdu, AhsExtendedCdbAndBidi) {
    // Extended CDB of 32 bytes total: 16 extra bytes, AHSLength = 17, padded 20 -> 20 bytes.
    std::vector<uint8_t> ahs = {0x00, 17, 0x01, 0x00};
    for (int i = 0; i < 16; ++i) ahs.push_back(uint8_t(0xc0 + i));
    ahs.resize(20 + 0);  // 3 + 17 = 20, already aligned
    const std::vector<uint8_t> bidi = {0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00};
    ahs.insert(ahs.end(), bidi.begin(), bidi.end());
    ParsedAhs p;
    ASSERT_TRUE(parse_ahs(ahs.data(), uint32_t(ahs.size()), &p));
    EXPECT_EQ(p.extended_cdb_length, 16u);
    EXPECT_EQ(p.extended_cdb[0], 0xc0);
    EXPECT_TRUE(p.has_bidi_read_length);
    EXPECT_EQ(p.bidi_read_length, 0x10000u);
    // Malformed: zero length, past the end, unknown type, duplicates.
    const uint8_t zero[4] = {0, 0, 1, 0};
    EXPECT_FALSE(parse_ahs(zero, 4, &p));
    const uint8_t past[4] = {0, 9, 1, 0};
    EXPECT_FALSE(parse_ahs(past, 4, &p));
    const uint8_t unknown[8] = {0, 5, 9, 0, 0, 0, 0, 0};
    EXPECT_FALSE(parse_ahs(unknown, 8, &p));
    std::vector<uint8_t> twice = bidi;
    twice.insert(twice.end(), bidi.begin(), bidi.end());
    EXPECT_FALSE(parse_ahs(twice.data(), uint32_t(twice.size()), &p));
    EXPECT_TRUE(parse_ahs(nullptr, 0, &p));
}

struct Collected {
    std::vector<std::vector<uint8_t>> headers, datas;
    std::vector<bool> ddgst_ok;
    RecvError error = RecvError::none;
};

// Feeds `stream` in chunks of the given sizes (cycling), collecting every PDU's data.
Collected feed_all(PduReceiver& rx, const std::vector<uint8_t>& stream, size_t split_at) {
    Collected c;
    std::vector<uint8_t> buf;
    iovec iov{};
    auto feed_range = [&](size_t begin, size_t end) {
        size_t off = begin;
        while (true) {
            RecvEvent ev;
            const size_t n = rx.feed(stream.data() + off, end - off, &ev);
            off += n;
            if (ev == RecvEvent::none) break;
            if (ev == RecvEvent::error) {
                c.error = rx.error();
                return false;
            }
            if (ev == RecvEvent::header) {
                buf.assign(rx.data_length(), 0);
                iov = {buf.data(), buf.size()};
                rx.set_data_destination(&iov, 1);
                continue;
            }
            c.headers.emplace_back(rx.header(), rx.header() + kBhsSize + rx.ahs_length());
            c.datas.push_back(rx.data_length() ? buf : std::vector<uint8_t>{});
            c.ddgst_ok.push_back(rx.data_digest_ok());
        }
        return true;
    };
    if (feed_range(0, std::min(split_at, stream.size())))
        feed_range(std::min(split_at, stream.size()), stream.size());
    return c;
}

TEST(IscsiPduReceiver, WholePdusAtEveryBoundary) {
    for (const PduDigests dg : {PduDigests{false, false}, PduDigests{true, true}}) {
        std::vector<uint8_t> stream = scsi_write_pdu(13, 0x40, dg);
        const auto second = scsi_write_pdu(0, 0, dg);
        stream.insert(stream.end(), second.begin(), second.end());
        const auto third = scsi_write_pdu(8, 0x10, dg, {0x00, 0x05, 0x02, 0x00, 0, 0, 2, 0});
        stream.insert(stream.end(), third.begin(), third.end());
        for (size_t split = 0; split <= stream.size(); ++split) {
            PduReceiver rx({dg.header, dg.data, 8192});
            const Collected c = feed_all(rx, stream, split);
            ASSERT_EQ(c.error, RecvError::none) << split;
            ASSERT_EQ(c.datas.size(), 3u) << split;
            EXPECT_EQ(c.datas[0].size(), 13u);
            EXPECT_EQ(c.datas[0][12], 0x40 + 12);
            EXPECT_TRUE(c.datas[1].empty());
            EXPECT_EQ(c.datas[2].size(), 8u);
            EXPECT_EQ(c.headers[2].size(), kBhsSize + 8);
            EXPECT_TRUE(c.ddgst_ok[0] && c.ddgst_ok[2]);
            EXPECT_TRUE(rx.at_pdu_boundary());
            EXPECT_TRUE(rx.parsed_ahs().has_bidi_read_length);
            EXPECT_EQ(rx.parsed_ahs().bidi_read_length, 0x200u);
        }
    }
}

TEST(IscsiPduReceiver, ByteAtATime) {
    const auto stream = scsi_write_pdu(1001, 0x22, {true, true});
    PduReceiver rx({true, true, 8192});
    std::vector<uint8_t> buf(1001);
    iovec iov{buf.data(), buf.size()};
    int pdus = 0;
    for (size_t i = 0; i < stream.size(); ++i) {
        RecvEvent ev;
        size_t n = rx.feed(&stream[i], 1, &ev);
        if (ev == RecvEvent::header) {
            rx.set_data_destination(&iov, 1);
            if (n == 0) n = rx.feed(&stream[i], 1, &ev);
        }
        ASSERT_EQ(n, 1u);
        ASSERT_NE(ev, RecvEvent::error);
        if (ev == RecvEvent::pdu) ++pdus;
    }
    EXPECT_EQ(pdus, 1);
    EXPECT_EQ(buf[1000], uint8_t(0x22 + 1000));
}

TEST(IscsiPduReceiver, DirectPlacementDigestsInPlace) {
    // The connection reads the data straight into the destination; the digest is computed
    // there, the padding and digest still come through feed().
    for (const bool bad : {false, true}) {
        auto stream = scsi_write_pdu(1001, 0x31, {true, true});
        const size_t hdr = kBhsSize + kDigestSize;
        if (bad) stream[hdr + 500] ^= 1;
        PduReceiver rx({true, true, 8192});
        RecvEvent ev;
        ASSERT_EQ(rx.feed(stream.data(), hdr + 100, &ev), hdr);
        ASSERT_EQ(ev, RecvEvent::header);
        std::vector<uint8_t> buf(1001);
        iovec iov[2] = {{buf.data(), 600}, {buf.data() + 600, 401}};
        rx.set_data_destination(iov, 2);
        ASSERT_EQ(rx.feed(stream.data() + hdr, 100, &ev), 100u);  // staged bytes first
        ASSERT_TRUE(rx.in_data());
        iovec rem[4];
        ASSERT_EQ(rx.data_iov_remaining(rem, 4), 2u);
        EXPECT_EQ(rem[0].iov_base, buf.data() + 100);
        EXPECT_EQ(rem[0].iov_len + rem[1].iov_len, 901u);
        std::memcpy(buf.data() + 100, stream.data() + hdr + 100, 901);  // "the socket"
        rx.data_received(901);
        EXPECT_FALSE(rx.in_data());
        const size_t rest = stream.size() - hdr - 1001;  // padding + data digest
        ASSERT_EQ(rx.feed(stream.data() + hdr + 1001, rest, &ev), rest);
        ASSERT_EQ(ev, RecvEvent::pdu);
        EXPECT_EQ(rx.data_digest_ok(), !bad);
        EXPECT_EQ(buf[1000], uint8_t(0x31 + 1000));
        EXPECT_TRUE(rx.at_pdu_boundary());
    }
}

TEST(IscsiPduReceiver, HeaderDigestErrorIsFatal) {
    auto stream = scsi_write_pdu(4, 1, {true, false});
    stream[20] ^= 1;  // inside the BHS
    PduReceiver rx({true, false, 8192});
    const Collected c = feed_all(rx, stream, stream.size());
    EXPECT_EQ(c.error, RecvError::header_digest);
    RecvEvent ev;
    EXPECT_EQ(rx.feed(stream.data(), stream.size(), &ev), 0u);
    EXPECT_EQ(ev, RecvEvent::error);
}

TEST(IscsiPduReceiver, DataDigestErrorIsReportedNotFatal) {
    auto stream = scsi_write_pdu(5, 1, {false, true});
    const auto good = scsi_write_pdu(5, 1, {false, true});
    stream[kBhsSize + 2] ^= 0x80;  // a data byte
    stream.insert(stream.end(), good.begin(), good.end());
    PduReceiver rx({false, true, 8192});
    const Collected c = feed_all(rx, stream, 3);
    ASSERT_EQ(c.error, RecvError::none);
    ASSERT_EQ(c.ddgst_ok.size(), 2u);
    EXPECT_FALSE(c.ddgst_ok[0]);
    EXPECT_TRUE(c.ddgst_ok[1]);
    // Corrupted padding is caught too (the digest covers it).
    auto padbad = scsi_write_pdu(5, 1, {false, true});
    padbad[kBhsSize + 6] = 0xff;
    PduReceiver rx2({false, true, 8192});
    const Collected c2 = feed_all(rx2, padbad, padbad.size());
    ASSERT_EQ(c2.ddgst_ok.size(), 1u);
    EXPECT_FALSE(c2.ddgst_ok[0]);
}

// Deferred data digests (data_digest_defer_min): a PDU with at least that much data reaches
// the pdu event unchecked; the caller's crc32c over the data and padding() matches
// data_digest() exactly when the data is intact (padding included). Smaller PDUs stay inline.
TEST(IscsiPduReceiver, DataDigestDeferredAboveTheThreshold) {
    auto check = [](std::vector<uint8_t> stream, uint32_t len, size_t corrupt_at, bool deferred,
                    bool intact) {
        if (corrupt_at) stream[corrupt_at] ^= 0x10;
        RecvConfig cfg{false, true, 8192};
        cfg.data_digest_defer_min = 6;
        PduReceiver rx(cfg);
        std::vector<uint8_t> buf(len);
        iovec iov{buf.data(), buf.size()};
        size_t off = 0;
        RecvEvent ev;
        do {
            off += rx.feed(stream.data() + off, stream.size() - off, &ev);
            if (ev == RecvEvent::header) rx.set_data_destination(&iov, 1);
        } while (ev != RecvEvent::pdu && ev != RecvEvent::error && off < stream.size());
        ASSERT_EQ(ev, RecvEvent::pdu);
        EXPECT_EQ(rx.data_digest_deferred(), deferred);
        if (!deferred) {
            EXPECT_EQ(rx.data_digest_ok(), intact);
            return;
        }
        EXPECT_TRUE(rx.data_digest_ok());  // not checked here
        ASSERT_EQ(rx.padding().size(), pad4(len));
        const uint32_t crc =
            crc32c(crc32c(0, buf.data(), buf.size()), rx.padding().data(), rx.padding().size());
        EXPECT_EQ(crc == rx.data_digest(), intact);
    };
    check(scsi_write_pdu(7, 3, {false, true}), 7, 0, true, true);
    check(scsi_write_pdu(7, 3, {false, true}), 7, kBhsSize + 1, true, false);  // data
    check(scsi_write_pdu(7, 3, {false, true}), 7, kBhsSize + 7, true, false);  // padding
    check(scsi_write_pdu(7, 3, {false, true}), 7, kBhsSize + 8, true, false);  // DDGST
    check(scsi_write_pdu(5, 3, {false, true}), 5, 0, false, true);  // under the threshold
    check(scsi_write_pdu(5, 3, {false, true}), 5, kBhsSize + 1, false, false);
    // check_data_digest_inline() at the header event: checked here after all.
    for (const bool corrupt : {false, true}) {
        auto stream = scsi_write_pdu(7, 3, {false, true});
        if (corrupt) stream[kBhsSize + 2] ^= 1;
        RecvConfig cfg{false, true, 8192};
        cfg.data_digest_defer_min = 6;
        PduReceiver rx(cfg);
        std::vector<uint8_t> buf(7);
        iovec iov{buf.data(), buf.size()};
        RecvEvent ev;
        size_t off = rx.feed(stream.data(), stream.size(), &ev);
        ASSERT_EQ(ev, RecvEvent::header);
        rx.check_data_digest_inline();
        rx.set_data_destination(&iov, 1);
        off += rx.feed(stream.data() + off, stream.size() - off, &ev);
        ASSERT_EQ(ev, RecvEvent::pdu);
        EXPECT_FALSE(rx.data_digest_deferred());
        EXPECT_EQ(rx.data_digest_ok(), !corrupt);
    }
}

TEST(IscsiPduReceiver, ProtocolErrors) {
    {
        auto s = scsi_write_pdu(8193, 0, {});
        PduReceiver rx({false, false, 8192});
        EXPECT_EQ(feed_all(rx, s, s.size()).error, RecvError::data_too_long);
        PduReceiver big({false, false, 65536});
        EXPECT_EQ(feed_all(big, s, s.size()).error, RecvError::none);
    }
    {
        auto s = scsi_write_pdu(0, 0, {});
        s[0] = uint8_t(Opcode::scsi_rsp);
        PduReceiver rx;
        EXPECT_EQ(feed_all(rx, s, s.size()).error, RecvError::bad_opcode);
    }
    {
        // An initiator's receiver (from_target): target opcodes pass, initiator opcodes do not,
        // and an R2T with data is malformed.
        RecvConfig cfg;
        cfg.from_target = true;
        auto s = scsi_write_pdu(0, 0, {});
        s[0] = uint8_t(Opcode::scsi_rsp);
        PduReceiver rx(cfg);
        EXPECT_EQ(feed_all(rx, s, s.size()).error, RecvError::none);
        s[0] = uint8_t(Opcode::scsi_cmd);
        PduReceiver rx2(cfg);
        EXPECT_EQ(feed_all(rx2, s, s.size()).error, RecvError::bad_opcode);
        auto d = scsi_write_pdu(8, 0, {});
        d[0] = uint8_t(Opcode::r2t);
        PduReceiver rx3(cfg);
        EXPECT_EQ(feed_all(rx3, d, d.size()).error, RecvError::unexpected_data);
    }
    {
        auto s = scsi_write_pdu(0, 0, {}, {0x00, 0x05, 0x07, 0x00, 0, 0, 0, 0});  // unknown AHS
        PduReceiver rx;
        EXPECT_EQ(feed_all(rx, s, s.size()).error, RecvError::bad_ahs);
    }
    {
        LogoutReq l{};
        l.opcode = uint8_t(Opcode::logout_req) | kImmediateBit;
        l.data_segment_length.set(4);
        std::vector<uint8_t> s(reinterpret_cast<uint8_t*>(&l), reinterpret_cast<uint8_t*>(&l) + 48);
        PduReceiver rx;
        EXPECT_EQ(feed_all(rx, s, s.size()).error, RecvError::unexpected_data);
    }
}

TEST(IscsiPduReceiver, DiscardAndScatter) {
    const auto stream = scsi_write_pdu(10, 0x30, {});
    PduReceiver rx;
    RecvEvent ev;
    size_t off = rx.feed(stream.data(), stream.size(), &ev);
    ASSERT_EQ(ev, RecvEvent::header);
    // Asked again without a decision: header again, nothing consumed.
    EXPECT_EQ(rx.feed(stream.data() + off, stream.size() - off, &ev), 0u);
    EXPECT_EQ(ev, RecvEvent::header);
    uint8_t a[3], b[7];
    iovec v[2] = {{a, 3}, {b, 7}};
    rx.set_data_destination(v, 2);
    off += rx.feed(stream.data() + off, stream.size() - off, &ev);
    EXPECT_EQ(ev, RecvEvent::pdu);
    EXPECT_EQ(off, stream.size());
    EXPECT_EQ(a[2], 0x32);
    EXPECT_EQ(b[6], 0x39);
    PduReceiver rx2;
    off = rx2.feed(stream.data(), stream.size(), &ev);
    rx2.discard_data();
    off += rx2.feed(stream.data() + off, stream.size() - off, &ev);
    EXPECT_EQ(ev, RecvEvent::pdu);
    EXPECT_EQ(off, stream.size());
}

TEST(IscsiPduBuilder, DigestsMatchCrc32c) {
    NopIn n{};
    n.opcode = uint8_t(Opcode::nop_in);
    n.flags = kFinalBit;
    n.itt.set(kReservedTag);
    const uint8_t data[3] = {1, 2, 3};
    std::vector<uint8_t> out;
    append_pdu(out, &n, data, {true, true});
    ASSERT_EQ(out.size(), 48u + 4 + 4 + 4);
    EXPECT_EQ(out[7], 3);  // DataSegmentLength
    const uint32_t h = crc32c(0, out.data(), 48);
    EXPECT_EQ(out[48], uint8_t(h));  // least significant byte first
    EXPECT_EQ(out[51], uint8_t(h >> 24));
    const uint8_t padded[4] = {1, 2, 3, 0};
    const uint32_t d = crc32c(0, padded, 4);
    EXPECT_EQ(out[56], uint8_t(d));
    EXPECT_EQ(out[59], uint8_t(d >> 24));
    // RFC 3720 B.4: 32 bytes of zeros -> CRC32C 0x8a9136aa, sent as aa 36 91 8a.
    uint8_t zeros[32] = {};
    EXPECT_EQ(crc32c(0, zeros, 32), 0x8a9136aau);
}

TEST(IscsiPduBuilder, Reject) {
    ScsiCmd c{};
    c.opcode = uint8_t(Opcode::scsi_cmd);
    c.itt.set(5);
    SnState sn{10, 20, 30};
    std::vector<uint8_t> out;
    append_reject(out, RejectReason::protocol_error, reinterpret_cast<uint8_t*>(&c), sn, {});
    ASSERT_EQ(out.size(), 96u);
    const auto r = bhs_as<Reject>(out.data());
    EXPECT_EQ(r.opcode, 0x3f);
    EXPECT_EQ(r.reason, 0x04);
    EXPECT_EQ(r.itt.get(), kReservedTag);
    EXPECT_EQ(r.stat_sn.get(), 10u);
    EXPECT_EQ(sn.stat_sn, 11u);
    EXPECT_EQ(r.data_segment_length.get(), 48u);
    EXPECT_EQ(out[48], uint8_t(Opcode::scsi_cmd));
}

}  // namespace
}  // namespace strata::iscsi
