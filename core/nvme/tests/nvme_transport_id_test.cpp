// SPDK's transport-id strings: the parser against spdk_nvme_transport_id_parse's behaviour.
#include <gtest/gtest.h>

#include <string>

#include <strata/nvme/transport_id.h>

namespace strata::nvme {
namespace {

TEST(TransportIdTest, ParsesTcp) {
    auto r = parse_transport_id(
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 "
        "subnqn:nqn.2016-06.io.spdk:cnode1 hostnqn:nqn.2014-08.org.nvmexpress:uuid:1");
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->trtype, TrType::tcp);
    EXPECT_EQ(r->trstring, "TCP");
    EXPECT_EQ(r->adrfam, AdrFam::ipv4);
    EXPECT_EQ(r->traddr, "127.0.0.1");
    EXPECT_EQ(r->trsvcid, "4420");
    EXPECT_EQ(r->subnqn, "nqn.2016-06.io.spdk:cnode1");  // only the first ':' splits
    EXPECT_EQ(r->hostnqn, "nqn.2014-08.org.nvmexpress:uuid:1");
    EXPECT_TRUE(r->is_fabrics());
    EXPECT_TRUE(r->ignored_keys.empty());
}

TEST(TransportIdTest, ParsesPcieWithColonsInTheAddress) {
    auto r = parse_transport_id("trtype:PCIe traddr:0000:01:00.0");
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->trtype, TrType::pcie);
    EXPECT_EQ(r->traddr, "0000:01:00.0");
    EXPECT_FALSE(r->is_fabrics());
}

TEST(TransportIdTest, KeysAndValuesAreCaseInsensitiveAndEqualsWorks) {
    auto r = parse_transport_id("TrType=tcp\tADRFAM=ipv6\ntraddr=::1 TRSVCID:4421");
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->trtype, TrType::tcp);
    EXPECT_EQ(r->trstring, "TCP");
    EXPECT_EQ(r->adrfam, AdrFam::ipv6);
    EXPECT_EQ(r->traddr, "::1");  // '=' came first: the colons stay in the value
    EXPECT_EQ(r->trsvcid, "4421");
}

TEST(TransportIdTest, UnknownKeysAreIgnoredAndListed) {
    auto r = parse_transport_id("trtype:tcp alt_traddr:10.0.0.2 bogus:1 ns:3 priority:2");
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_EQ(r->ignored_keys.size(), 2u);
    EXPECT_EQ(r->ignored_keys[0], "alt_traddr");
    EXPECT_EQ(r->ignored_keys[1], "bogus");
    EXPECT_EQ(r->nsid, 3u);
    EXPECT_EQ(r->priority, 2);
}

TEST(TransportIdTest, UnknownTrtypeIsCustom) {
    auto r = parse_transport_id("trtype:weird");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->trtype, TrType::custom);
    EXPECT_EQ(r->trstring, "WEIRD");
}

TEST(TransportIdTest, Rejects) {
    EXPECT_EQ(parse_transport_id("trtype").code(), Errc::invalid_argument);        // no separator
    EXPECT_EQ(parse_transport_id("trtype: traddr:x").code(), Errc::invalid_argument);  // no value
    EXPECT_EQ(parse_transport_id("adrfam:IPv5").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_transport_id("traddr:" + std::string(257, 'a')).code(), Errc::invalid_argument);
    EXPECT_TRUE(parse_transport_id("traddr:" + std::string(256, 'a')).ok());
    EXPECT_EQ(parse_transport_id("trsvcid:" + std::string(33, '1')).code(), Errc::invalid_argument);
    EXPECT_EQ(parse_transport_id("subnqn:" + std::string(224, 'n')).code(), Errc::invalid_argument);
    EXPECT_TRUE(parse_transport_id("subnqn:" + std::string(223, 'n')).ok());
    EXPECT_EQ(parse_transport_id(std::string(32, 'k') + ":v").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_transport_id("priority:12345").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_transport_id("priority:x").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_transport_id("ns:0").code(), Errc::invalid_argument);
    auto r = parse_transport_id("adrfam:IPv5");
    EXPECT_NE(r.error().message().find("IPv5"), std::string::npos);
}

TEST(TransportIdTest, EmptyAndBlankAreDefaults) {
    auto r = parse_transport_id("");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->trtype, TrType::pcie);
    EXPECT_TRUE(parse_transport_id("   \t").ok());
}

TEST(TransportIdTest, RoundTrips) {
    const std::string text =
        "trtype:TCP adrfam:IPv4 traddr:10.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1";
    auto r = parse_transport_id(text);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(to_string(*r), text);
    auto again = parse_transport_id(to_string(*r));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->subnqn, r->subnqn);
}

}  // namespace
}  // namespace strata::nvme
