#include <gtest/gtest.h>

#include <strata/env/env.h>
#include <strata/env/pci.h>

namespace strata::env {
namespace {

TEST(PciAddress, ParseAndFormat) {
    auto a = PciAddress::parse("0000:01:00.0");
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->to_string(), "0000:01:00.0");
    auto b = PciAddress::parse("1f:1A.7");
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b->bus, 0x1f);
    EXPECT_EQ(b->device, 0x1a);
    EXPECT_EQ(b->function, 7);
    EXPECT_EQ(b->to_string(), "0000:1f:1a.7");
    auto c = PciAddress::parse("abcd:ff:1f.7");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->domain, 0xabcdu);
    for (const char* bad : {"", "0000:01:00", "01:20.0", "01:00.8", "0000:001:00.0",
                            "x0:00.0", "0000:01:00.0.1", "12345:01:00.0", ":00.0", "01:.0"}) {
        auto r = PciAddress::parse(bad);
        EXPECT_EQ(r.code(), Errc::invalid_argument) << bad;
        if (!r.ok()) {
            EXPECT_NE(r.error().message().find("invalid PCI address"), std::string::npos);
        }
    }
}

TEST(EnvInit, UnknownBackendListsTheBuiltOnes) {
    EnvOptions o;
    o.backend = "qemu";
    auto r = init(o);
    ASSERT_EQ(r.code(), Errc::invalid_argument);
    EXPECT_NE(r.error().message().find("sim"), std::string::npos) << r.error().message();
    EXPECT_FALSE(initialized());
    ASSERT_TRUE(init().ok());
    EXPECT_EQ(backend_name(), "sim");
    EXPECT_TRUE(init().ok()) << "same options: no-op";
    fini();
    EXPECT_FALSE(initialized());
}

TEST(EnvInit, DefaultBackendStartsOnFirstUse) {
    ASSERT_FALSE(initialized());
    auto devs = enumerate();
    ASSERT_TRUE(devs.ok());
    EXPECT_TRUE(devs->empty()) << "no emulated bus attached";
    EXPECT_EQ(backend_name(), "sim");
    auto c = claim(PciAddress{0, 1, 0, 0});
    EXPECT_EQ(c.code(), Errc::not_found);
    fini();
}

}  // namespace
}  // namespace strata::env
