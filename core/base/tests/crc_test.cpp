// crc32c against the RFC 3720 (iSCSI) B.4 check values and the "123456789" check, chaining
// through the seed, and the iovec form.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <strata/base/crc.h>

namespace strata {
namespace {

TEST(Crc32c, Rfc3720CheckValues) {
    uint8_t buf[32];
    std::memset(buf, 0, sizeof buf);
    EXPECT_EQ(crc32c(0, buf, 32), 0x8A9136AAu);
    std::memset(buf, 0xFF, sizeof buf);
    EXPECT_EQ(crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
    EXPECT_EQ(crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
    EXPECT_EQ(crc32c(0, buf, 32), 0x113FDB5Cu);
    EXPECT_EQ(crc32c(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32c, EmptyReturnsSeed) {
    EXPECT_EQ(crc32c(0, nullptr, 0), 0u);
    EXPECT_EQ(crc32c(0x12345678, "", 0), 0x12345678u);
}

TEST(Crc32c, SeedChains) {
    std::vector<uint8_t> data(10'000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
    const uint32_t whole = crc32c(0, data.data(), data.size());
    for (size_t cut : {size_t{0}, size_t{1}, size_t{31}, size_t{4096}, size_t{9999}}) {
        const uint32_t a = crc32c(0, data.data(), cut);
        EXPECT_EQ(crc32c(a, data.data() + cut, data.size() - cut), whole) << cut;
    }
}

TEST(Crc32c, IovecMatchesFlat) {
    const char* text = "123456789";
    struct iovec iov[4] = {{const_cast<char*>(text), 1},
                           {nullptr, 0},
                           {const_cast<char*>(text + 1), 5},
                           {const_cast<char*>(text + 6), 3}};
    EXPECT_EQ(crc32c_iov(0, iov, 4), 0xE3069283u);
    EXPECT_EQ(crc32c(0, std::span<const struct iovec>(iov, 4)), 0xE3069283u);
    EXPECT_EQ(crc32c_iov(7, iov, 0), 7u);
}

}  // namespace
}  // namespace strata
