// virtio_scsi's reading of replies (scsi_reply.h): the scan's INQUIRY and READ CAPACITY data and
// the mapping of virtio-scsi responses, SCSI status and sense to bdev errors, with the hostile
// replies a device may send (short used length, residual beyond the transfer, garbage status,
// short data, sense without a valid format).
#include <gtest/gtest.h>

#include <cstring>

#include "virtio/scsi_reply.h"

namespace strata::bdev::vscsi {
namespace {

namespace vsc = virtio::spec::scsi;
constexpr uint32_t kResp = sizeof(vsc::RespCmd);

vsc::RespCmd good() {
    vsc::RespCmd r{};
    r.response = vsc::kSOk;
    r.status = kStatusGood;
    return r;
}
vsc::RespCmd check_condition(uint8_t key, uint8_t asc, uint8_t ascq, bool descriptor = false) {
    vsc::RespCmd r = good();
    r.status = kStatusCheckCondition;
    if (descriptor) {
        r.sense[0] = 0x72;
        r.sense[1] = key;
        r.sense[2] = asc;
        r.sense[3] = ascq;
        r.sense_len = 8;
    } else {
        r.sense[0] = 0x70;
        r.sense[2] = key;
        r.sense[7] = 10;
        r.sense[12] = asc;
        r.sense[13] = ascq;
        r.sense_len = 18;
    }
    return r;
}

TEST(VirtioScsiReply, GoodWithDataCountsWhatTheDeviceWrote) {
    vsc::RespCmd r = good();
    Reply x = read_reply(r, kResp + 36, 96);
    EXPECT_EQ(x.code, Errc::ok);
    EXPECT_EQ(x.data_in, 36u);
    r.residual = 60;
    x = read_reply(r, kResp + 96, 96);  // the residual says 36 even though 96 were "written"
    EXPECT_EQ(x.code, Errc::ok);
    EXPECT_EQ(x.data_in, 36u);
}

TEST(VirtioScsiReply, HostileRepliesAreErrorsNamingTheReason) {
    vsc::RespCmd r = good();
    Reply x = read_reply(r, 11, 0);  // shorter than the 12-byte header
    EXPECT_EQ(x.code, Errc::protocol_error);
    EXPECT_NE(x.why.find("11 bytes"), std::string::npos) << x.why;
    r.residual = 97;
    x = read_reply(r, kResp + 96, 96);
    EXPECT_EQ(x.code, Errc::protocol_error);
    EXPECT_NE(x.why.find("residual 97"), std::string::npos) << x.why;
    r = good();
    r.status = 0x77;  // no such SCSI status
    x = read_reply(r, kResp, 0);
    EXPECT_EQ(x.code, Errc::io_error);
    EXPECT_NE(x.why.find("0x77"), std::string::npos) << x.why;
    r = good();
    r.response = 200;  // no such response code
    x = read_reply(r, kResp, 0);
    EXPECT_EQ(x.code, Errc::io_error);
    EXPECT_NE(x.why.find("200"), std::string::npos) << x.why;
    // CHECK CONDITION whose sense is garbage, or longer than the device wrote.
    r = check_condition(kSenseMediumError, 0x11, 0);
    r.sense[0] = 0x12;
    x = read_reply(r, kResp, 0);
    EXPECT_EQ(x.code, Errc::io_error);
    EXPECT_FALSE(x.sense.valid);
    r = check_condition(kSenseIllegalRequest, 0x21, 0);
    r.sense_len = 4000;  // clamped to the sense field and to what was written
    x = read_reply(r, 12 + 3, 0);
    EXPECT_TRUE(x.sense.valid);
    EXPECT_EQ(x.sense.key, kSenseIllegalRequest);
    EXPECT_EQ(x.sense.asc, 0) << "ASC read beyond the bytes the device wrote";
}

TEST(VirtioScsiReply, ResponseCodesMap) {
    vsc::RespCmd r = good();
    r.response = vsc::kSBadTarget;
    Reply x = read_reply(r, kResp, 0);
    EXPECT_EQ(x.code, Errc::io_error);
    EXPECT_NE(x.why.find("BAD_TARGET"), std::string::npos);
    r.response = vsc::kSBusy;
    EXPECT_EQ(read_reply(r, kResp, 0).code, Errc::busy);
    r = good();
    r.status = kStatusBusy;
    EXPECT_EQ(read_reply(r, kResp, 0).code, Errc::busy);
    r.status = kStatusTaskSetFull;
    EXPECT_EQ(read_reply(r, kResp, 0).code, Errc::busy);
    r.status = kStatusReservationConflict;
    EXPECT_EQ(read_reply(r, kResp, 0).code, Errc::permission_denied);
}

TEST(VirtioScsiReply, SenseMapsToBdevErrorsInBothFormats) {
    for (bool desc : {false, true}) {
        SCOPED_TRACE(desc ? "descriptor" : "fixed");
        auto code = [&](uint8_t k, uint8_t asc) {
            return read_reply(check_condition(k, asc, 0, desc), kResp, 0).code;
        };
        EXPECT_EQ(code(kSenseIllegalRequest, 0x20), Errc::not_supported);
        EXPECT_EQ(code(kSenseIllegalRequest, 0x21), Errc::out_of_range);
        EXPECT_EQ(code(kSenseIllegalRequest, 0x24), Errc::invalid_argument);
        EXPECT_EQ(code(kSenseMediumError, 0x11), Errc::io_error);
        EXPECT_EQ(code(kSenseDataProtect, 0x27), Errc::permission_denied);
        EXPECT_EQ(code(kSenseMiscompare, 0x1d), Errc::corrupt);
        EXPECT_EQ(code(kSenseUnitAttention, 0x29), Errc::io_error);
        Reply x = read_reply(check_condition(kSenseMediumError, 0x11, 0x04, desc), kResp, 0);
        EXPECT_EQ(x.sense.key, kSenseMediumError);
        EXPECT_EQ(x.sense.asc, 0x11);
        EXPECT_EQ(x.sense.ascq, 0x04);
        EXPECT_NE(x.why.find("ASC 0x11"), std::string::npos) << x.why;
    }
}

TEST(VirtioScsiReply, Inquiry) {
    uint8_t d[96] = {};
    d[0] = 0x00;
    std::memcpy(d + 8, "STRATA  ", 8);
    std::memcpy(d + 16, "Virtual Disk    ", 16);
    auto q = parse_inquiry(d, 36);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->qualifier, 0);
    EXPECT_EQ(q->device_type, 0);
    EXPECT_EQ(q->vendor, "STRATA");
    EXPECT_EQ(q->product, "Virtual Disk");
    d[0] = 0x7f;  // qualifier 3, type 0x1f: no device
    q = parse_inquiry(d, 96);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->qualifier, 3);
    EXPECT_EQ(q->device_type, 0x1f);
    d[8] = 0x01;  // unprintable vendor bytes come out as dots
    EXPECT_EQ(parse_inquiry(d, 36)->vendor, ".TRATA");
    auto shortq = parse_inquiry(d, 35);
    ASSERT_FALSE(shortq.ok());
    EXPECT_EQ(shortq.code(), Errc::protocol_error);
    EXPECT_NE(shortq.error().message().find("35 bytes"), std::string::npos);
}

TEST(VirtioScsiReply, ReadCapacity) {
    uint8_t d10[8] = {0, 0, 0x3f, 0xff, 0, 0, 2, 0};  // last LBA 16383, 512-byte blocks
    auto c = parse_read_capacity10(d10, 8);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->num_blocks, 16384u);
    EXPECT_EQ(c->block_size, 512u);
    EXPECT_FALSE(c->lbpme);
    EXPECT_EQ(parse_read_capacity10(d10, 7).code(), Errc::protocol_error);
    uint8_t d16[32] = {};
    d16[6] = 0x0f;
    d16[7] = 0xff;   // last LBA 4095
    d16[10] = 0x10;  // 4096-byte blocks
    d16[14] = 0x80;  // LBPME
    c = parse_read_capacity16(d16, 32);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->num_blocks, 4096u);
    EXPECT_EQ(c->block_size, 4096u);
    EXPECT_TRUE(c->lbpme);
    EXPECT_EQ(parse_read_capacity16(d16, 15).code(), Errc::protocol_error);
    d16[10] = 0;
    d16[11] = 100;  // not a power of two
    auto bad = parse_read_capacity16(d16, 32);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message().find("block size 100"), std::string::npos);
    std::memset(d16, 0xff, 8);  // last LBA UINT64_MAX: the count would wrap
    d16[10] = 2;
    d16[11] = 0;
    EXPECT_EQ(parse_read_capacity16(d16, 32).code(), Errc::protocol_error);
}

}  // namespace
}  // namespace strata::bdev::vscsi
