// dpdk backend pieces that need no running EAL: the EAL argument vector built from Strata's
// options, PCI address parsing and the per-function claim lock between processes.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpdk/dpdk_memory.h"
#include "dpdk/dpdk_pci.h"
#include "dpdk/eal.h"

namespace strata::env::dpdk {
namespace {

bool has(const std::vector<std::string>& args, const std::string& a) {
    return std::find(args.begin(), args.end(), a) != args.end();
}

bool has_prefix(const std::vector<std::string>& args, const std::string& p) {
    return std::any_of(args.begin(), args.end(),
                       [&](const std::string& a) { return a.rfind(p, 0) == 0; });
}

TEST(DpdkEalArgs, DefaultsGiveOneLcoreInMemoryAndUniquePrefix) {
    auto a = build_eal_args(EalOptions{});
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_EQ((*a)[0], "strata");
    EXPECT_TRUE(has(*a, "-l0"));
    EXPECT_TRUE(has(*a, "--in-memory"));
    EXPECT_TRUE(has(*a, "--no-telemetry"));
    EXPECT_TRUE(has(*a, "--file-prefix=strata_" + std::to_string(getpid())));
    EXPECT_TRUE(has_prefix(*a, "--log-level="));
    EXPECT_FALSE(has_prefix(*a, "-m"));
    EXPECT_FALSE(has(*a, "--no-huge"));
    EXPECT_FALSE(has_prefix(*a, "--iova-mode"));
}

TEST(DpdkEalArgs, NoHugeUsesNoShconfNotInMemory) {
    EalOptions o;
    o.no_huge = true;
    o.no_pci = true;
    o.memory_mb = 64;
    o.cores = {1, 0};
    auto a = build_eal_args(o);
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_TRUE(has(*a, "--no-huge"));
    EXPECT_TRUE(has(*a, "--no-shconf"));
    EXPECT_FALSE(has(*a, "--in-memory"));  // EAL rejects --in-memory with --no-huge
    EXPECT_TRUE(has(*a, "--no-pci"));
    EXPECT_TRUE(has(*a, "-m64"));
    EXPECT_TRUE(has(*a, "-l1"));  // main lcore on the first core of Strata's list
}

TEST(DpdkEalArgs, AllowedPciIsCanonicalised) {
    EalOptions o;
    o.allowed_pci = {"01:00.0", "0000:5e:00.1"};
    o.iova_mode = IovaMode::va;
    o.huge_dir = "/dev/hugepages";
    o.file_prefix = "t1";
    o.log_level = "debug";
    o.extra_args = {"--vfio-intr=msix"};
    auto a = build_eal_args(o);
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_TRUE(has(*a, "-a0000:01:00.0"));
    EXPECT_TRUE(has(*a, "-a0000:5e:00.1"));
    EXPECT_TRUE(has(*a, "--iova-mode=va"));
    EXPECT_TRUE(has(*a, "--huge-dir=/dev/hugepages"));
    EXPECT_TRUE(has(*a, "--file-prefix=t1"));
    EXPECT_TRUE(has(*a, "--log-level=debug"));
    EXPECT_EQ(a->back(), "--vfio-intr=msix");
}

void expect_invalid(const EalOptions& o, const std::string& fragment) {
    auto a = build_eal_args(o);
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.code(), Errc::invalid_argument);
    EXPECT_NE(a.error().message().find(fragment), std::string::npos) << a.error().message();
}

TEST(DpdkEalArgs, BadOptionsAreClearErrors) {
    EalOptions o;
    o.allowed_pci = {"not-a-bdf"};
    expect_invalid(o, "'not-a-bdf' is not a PCI address");

    o = {};
    o.no_huge = true;
    o.iova_mode = IovaMode::pa;
    expect_invalid(o, "needs hugepages");

    o = {};
    o.no_pci = true;
    o.allowed_pci = {"0000:01:00.0"};
    expect_invalid(o, "no_pci");

    o = {};
    o.cores = {100000};
    expect_invalid(o, "core 100000");

    o = {};
    o.file_prefix = "../etc";
    expect_invalid(o, "file_prefix");

    o = {};
    o.log_level = "loud";
    expect_invalid(o, "log_level 'loud'");

    o = {};
    o.huge_dir = "relative";
    expect_invalid(o, "absolute path");

    o = {};
    o.no_huge = true;
    o.huge_dir = "/dev/hugepages";
    expect_invalid(o, "huge_dir");
}

TEST(DpdkPciAddress, CanonicalForm) {
    auto a = canonical_bdf("01:00.0");
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(*a, "0000:01:00.0");
    auto b = canonical_bdf("0000:AF:1f.7");
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*b, "0000:af:1f.7");
    for (const char* bad : {"", "0000:01:00", "0000:01:00.8", "xyz", "0000:01:00.0.1"}) {
        auto r = canonical_bdf(bad);
        EXPECT_FALSE(r.ok()) << bad;
        if (!r.ok()) {
            EXPECT_EQ(r.code(), Errc::invalid_argument);
        }
    }
}

// DPDK's PCI bus fails an attach with a bare -1: it must not be reported as EPERM ("Operation
// not permitted" sent users looking for a permissions problem when vfio_iommu_type1 refused an
// IOMMU without interrupt remapping, found by ci/vm); DPDK's own log line carries the reason.
TEST(DpdkPciAttachError, BareMinusOneIsNotEpermAndQuotesDpdk) {
    const std::string bdf = "0000:00:02.0";
    Error e = attach_error(bdf, -1, "EAL: 0000:00:02.0 failed to select IOMMU type");
    EXPECT_EQ(e.code(), Errc::io_error);
    const std::string& m = e.message();
    EXPECT_EQ(m.find("not permitted"), std::string::npos) << m;
    EXPECT_NE(m.find(bdf), std::string::npos) << m;
    EXPECT_NE(m.find("failed to select IOMMU type"), std::string::npos) << m;
    EXPECT_NE(m.find("intremap=on"), std::string::npos) << m;
    EXPECT_NE(m.find("allow_unsafe_interrupts"), std::string::npos) << m;

    Error plain = attach_error(bdf, -1, "");
    EXPECT_NE(plain.message().find("no error code"), std::string::npos) << plain.message();
    EXPECT_NE(plain.message().find("IOMMU group"), std::string::npos) << plain.message();
}

TEST(DpdkPciAttachError, RealCodesKeepTheirClass) {
    EXPECT_EQ(attach_error("0000:01:00.0", -ENODEV, "").code(), Errc::not_found);
    EXPECT_EQ(attach_error("0000:01:00.0", -EEXIST, "").code(), Errc::busy);
    Error io = attach_error("0000:01:00.0", -EIO, "");
    EXPECT_EQ(io.code(), Errc::io_error);
    EXPECT_NE(io.message().find("0000:01:00.0"), std::string::npos);
}

// The claim lock keeps a second process off a function and names the holder.
TEST(DpdkPciLock, SecondProcessGetsBusyWithHolderPid) {
    char dir_template[] = "/tmp/strata_dpdk_lock_XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    const std::string dir = dir_template;
    const std::string bdf = "0000:7f:1f.7";

    int ready[2];
    int release[2];
    ASSERT_EQ(pipe(ready), 0);
    ASSERT_EQ(pipe(release), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // Child: take the lock, report, hold it until told to stop. No gtest calls here.
        auto fd = lock_pci_function(bdf, dir.c_str());
        char c = fd.ok() ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        (void)!read(release[0], &c, 1);
        _exit(fd.ok() ? 0 : 1);
    }
    char c = 0;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    ASSERT_EQ(c, 'y');

    auto mine = lock_pci_function(bdf, dir.c_str());
    ASSERT_FALSE(mine.ok());
    EXPECT_EQ(mine.code(), Errc::busy);
    EXPECT_NE(mine.error().message().find("pid " + std::to_string(child)), std::string::npos)
        << mine.error().message();
    EXPECT_NE(mine.error().message().find(bdf), std::string::npos);

    // Once the holder exits, the lock is free again (whatever way a process ends).
    ASSERT_EQ(write(release[1], "x", 1), 1);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    auto again = lock_pci_function(bdf, dir.c_str());
    ASSERT_TRUE(again.ok()) << again.error().message();
    close(*again);

    for (int fd : {ready[0], ready[1], release[0], release[1]}) close(fd);
    std::string file = dir + "/strata_pci_lock_" + bdf;
    unlink(file.c_str());
    rmdir(dir.c_str());
}

TEST(DpdkPciLock, UnwritableDirectoryIsAClearError) {
    auto r = lock_pci_function("0000:00:00.0", "/nonexistent/strata");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("cannot create lock file"), std::string::npos);
}

TEST(DpdkVfioPagePlan, WholePagesOnceBoundaryPagesShared) {
    constexpr uintptr_t P = 4096;
    // Page-aligned: one interior mapping, no shared pages.
    VfioPagePlan a = plan_vfio_pages(10 * P, 3 * P, P);
    EXPECT_EQ(a.interior_begin, 10 * P);
    EXPECT_EQ(a.interior_end, 13 * P);
    EXPECT_EQ(a.n_boundary, 0);

    // Unaligned both ends: interior pages plus first and last partial pages.
    VfioPagePlan b = plan_vfio_pages(10 * P + 100, 3 * P, P);
    EXPECT_EQ(b.interior_begin, 11 * P);
    EXPECT_EQ(b.interior_end, 13 * P);
    ASSERT_EQ(b.n_boundary, 2);
    EXPECT_EQ(b.boundary[0], 10 * P);
    EXPECT_EQ(b.boundary[1], 13 * P);

    // Inside one page: that page only, once.
    VfioPagePlan c = plan_vfio_pages(10 * P + 100, 200, P);
    EXPECT_EQ(c.interior_begin, c.interior_end);
    ASSERT_EQ(c.n_boundary, 1);
    EXPECT_EQ(c.boundary[0], 10 * P);

    // Aligned start, unaligned end within the first page.
    VfioPagePlan d = plan_vfio_pages(10 * P, 100, P);
    EXPECT_EQ(d.interior_begin, d.interior_end);
    ASSERT_EQ(d.n_boundary, 1);
    EXPECT_EQ(d.boundary[0], 10 * P);

    // Two neighbours that share a page: both name it as a boundary page.
    VfioPagePlan left = plan_vfio_pages(10 * P, P + 50, P);
    VfioPagePlan right = plan_vfio_pages(11 * P + 50, 2 * P, P);
    ASSERT_EQ(left.n_boundary, 1);
    EXPECT_EQ(left.boundary[0], 11 * P);
    ASSERT_GE(right.n_boundary, 1);
    EXPECT_EQ(right.boundary[0], 11 * P);

    EXPECT_EQ(plan_vfio_pages(10 * P, 0, P).n_boundary, 0);
}

}  // namespace
}  // namespace strata::env::dpdk
