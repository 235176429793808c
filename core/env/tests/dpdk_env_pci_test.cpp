// The env's PCI API on the dpdk backend with the PCI bus scanned (EAL --no-huge, no --no-pci).
// This host has no IOMMU and nothing bound to vfio-pci, so it checks enumeration and the claim
// errors; claim, BARs, config space and hot removal on a real vfio function run in the VM job.
#include <string>

#include <gtest/gtest.h>

#include <strata/env/env.h>
#include <strata/env/pci.h>

namespace strata::env {
namespace {

class DpdkEnvPci : public ::testing::Test {
protected:
    void SetUp() override {
        EnvOptions o;
        o.backend = "dpdk";
        o.dpdk.no_huge = true;  // PCI needs no hugepages to be enumerated
        o.dpdk.memory_mb = 64;
        auto r = init(o);
        ASSERT_TRUE(r.ok()) << r.error().message();
    }
};

TEST_F(DpdkEnvPci, EnumerationIsCleanAndSorted) {
    auto all = enumerate();
    ASSERT_TRUE(all.ok()) << all.error().message();
    for (size_t i = 0; i < all->size(); ++i) {
        const PciDeviceInfo& d = (*all)[i];
        EXPECT_NE(d.vendor_id, 0u) << d.address.to_string();
        if (i > 0) {
            EXPECT_LT((*all)[i - 1].address, d.address);
        }
    }
    PciFilter nvme;
    nvme.class_code = 0x010802;  // NVMe
    auto only = enumerate(nvme);
    ASSERT_TRUE(only.ok());
    for (const PciDeviceInfo& d : *only) EXPECT_EQ(d.class_code, 0x010802u);
}

TEST_F(DpdkEnvPci, ClaimOfAMissingFunctionIsNotFound) {
    auto c = claim(*PciAddress::parse("0000:7f:1f.7"));
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.code(), Errc::not_found);
    EXPECT_NE(c.error().message().find("0000:7f:1f.7"), std::string::npos);
}

TEST_F(DpdkEnvPci, ClaimOfAFunctionNotOnVfioSaysHowToBindIt) {
    auto all = enumerate();
    ASSERT_TRUE(all.ok());
    for (const PciDeviceInfo& d : *all) {
        if (d.claimable) continue;
        auto c = claim(d.address);
        ASSERT_FALSE(c.ok());
        EXPECT_EQ(c.code(), Errc::not_supported);
        EXPECT_NE(c.error().message().find("vfio-pci"), std::string::npos) << c.error().message();
        // The failed claim left nothing behind: claiming again gives the same answer.
        auto again = claim(d.address);
        ASSERT_FALSE(again.ok());
        EXPECT_EQ(again.code(), Errc::not_supported);
        return;
    }
    GTEST_SKIP() << "every PCI function on this host is bound to vfio-pci";
}

}  // namespace
}  // namespace strata::env
