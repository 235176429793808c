// Tests for the I/OAT spec headers: register offsets, field accessors round-trip without
// touching neighbours, descriptor layouts, completion-status decoding and CHANERR names.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>

#include <strata/ioat/spec/spec.h>

namespace spec = strata::ioat::spec;

namespace {

template <typename Reg, typename Get, typename Set>
void check_field(const char* name, unsigned lsb, unsigned width, Get get, Set set) {
    using T = typename Reg::value_type;
    SCOPED_TRACE(name);
    const T field_max = strata::bits::mask<T>(width);
    const T field_mask = static_cast<T>(field_max << lsb);

    Reg r{};
    set(r, field_max);
    EXPECT_EQ(get(r), field_max);
    EXPECT_EQ(r.raw, field_mask) << "neighbouring bits changed";

    Reg ones{static_cast<T>(~T{0})};
    set(ones, T{0});
    EXPECT_EQ(get(ones), T{0});
    EXPECT_EQ(ones.raw, static_cast<T>(~field_mask)) << "neighbouring bits cleared";

    if (width < sizeof(T) * 8) {
        Reg wide{};
        set(wide, static_cast<T>(field_max + 1));
        EXPECT_EQ(wide.raw, T{0});
    }
}

#define CHECK_FIELD(Reg, field, lsb, width)                                  \
    check_field<Reg>(                                                        \
        #Reg "." #field, lsb, width, [](const Reg& r) { return r.field(); }, \
        [](Reg& r, Reg::value_type v) { r.set_##field(v); })

}  // namespace

TEST(IoatSpecRegisters, Offsets) {
    EXPECT_EQ(spec::reg::chancnt, 0x00u);
    EXPECT_EQ(spec::reg::xfercap, 0x01u);
    EXPECT_EQ(spec::reg::genctrl, 0x02u);
    EXPECT_EQ(spec::reg::intrctrl, 0x03u);
    EXPECT_EQ(spec::reg::attnstatus, 0x04u);
    EXPECT_EQ(spec::reg::cbver, 0x08u);
    EXPECT_EQ(spec::reg::intrdelay, 0x0Cu);
    EXPECT_EQ(spec::reg::cs_status, 0x0Eu);
    EXPECT_EQ(spec::reg::dmacapability, 0x10u);
    EXPECT_EQ(spec::reg::dcaoffset, 0x14u);
    // Channel 0 starts at 0x80: SPDK's register map puts CHANCTRL at 0x80, CHANCMD at 0x84,
    // DMACOUNT at 0x86, CHANSTS 0x88, CHAINADDR 0x90, CHANCMP 0x98, CHANERR 0xA8, mask 0xAC.
    EXPECT_EQ(spec::channel_base(0), 0x80u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chanctrl), 0x80u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chancmd), 0x84u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::dmacount), 0x86u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chansts), 0x88u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chainaddr), 0x90u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chancmp), 0x98u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chanerr), 0xA8u);
    EXPECT_EQ(spec::channel_reg(0, spec::chan_reg::chanerrmask), 0xACu);
    EXPECT_EQ(spec::channel_base(1), 0x100u);
    EXPECT_EQ(spec::channel_reg(3, spec::chan_reg::chanerr), 0x200u + 0x28u);
    EXPECT_EQ(spec::pci_cfg::chanerr_int, 0x180u);
}

TEST(IoatSpecRegisters, VersionAndXfercap) {
    EXPECT_EQ(spec::ver_major(spec::ver_3_2), 3u);
    EXPECT_EQ(spec::ver_minor(spec::ver_3_2), 2u);
    EXPECT_EQ(spec::xfercap_bytes(0), uint64_t{1} << 32);  // 0 means 4 GiB
    EXPECT_EQ(spec::xfercap_bytes(11), 0u);                // below 4 KiB: invalid
    EXPECT_EQ(spec::xfercap_bytes(12), 4096u);
    EXPECT_EQ(spec::xfercap_bytes(20), 1u << 20);
    EXPECT_EQ(spec::xfercap_bytes(0xF4), 1u << 20);  // only bits 4:0 count
}

TEST(IoatSpecRegisters, FieldsRoundTrip) {
    CHECK_FIELD(spec::ChanCtrl, int_rearm, 0, 1);
    CHECK_FIELD(spec::ChanCtrl, err_completion_en, 2, 1);
    CHECK_FIELD(spec::ChanCtrl, any_err_abort_en, 3, 1);
    CHECK_FIELD(spec::ChanCtrl, err_int_en, 4, 1);
    CHECK_FIELD(spec::ChanCtrl, desc_addr_snoop_control, 5, 1);
    CHECK_FIELD(spec::ChanCtrl, channel_in_use, 8, 1);
    CHECK_FIELD(spec::ChanCtrl, compl_dca_en, 9, 1);
    CHECK_FIELD(spec::ChanCtrl, priority, 12, 4);
    CHECK_FIELD(spec::ChanSts, status, 0, 3);
    CHECK_FIELD(spec::ChanSts, unaffiliated_error, 3, 1);
    CHECK_FIELD(spec::ChanSts, soft_error, 4, 1);
    CHECK_FIELD(spec::DescControl, int_enable, 0, 1);
    CHECK_FIELD(spec::DescControl, src_snoop_disable, 1, 1);
    CHECK_FIELD(spec::DescControl, dest_snoop_disable, 2, 1);
    CHECK_FIELD(spec::DescControl, completion_update, 3, 1);
    CHECK_FIELD(spec::DescControl, fence, 4, 1);
    CHECK_FIELD(spec::DescControl, null, 5, 1);
    CHECK_FIELD(spec::DescControl, src_page_break, 6, 1);
    CHECK_FIELD(spec::DescControl, dest_page_break, 7, 1);
    CHECK_FIELD(spec::DescControl, bundle, 8, 1);
    CHECK_FIELD(spec::DescControl, dest_dca, 9, 1);
    CHECK_FIELD(spec::DescControl, hint, 10, 1);
    CHECK_FIELD(spec::DescControl, src_count, 5, 3);
    CHECK_FIELD(spec::DescControl, p_disable, 11, 1);
    CHECK_FIELD(spec::DescControl, q_disable, 12, 1);
    CHECK_FIELD(spec::DescControl, op, 24, 8);
}

TEST(IoatSpecRegisters, ChanCtrlRunValue) {
    // What Linux programs to run a channel: re-arm, error interrupt, error completion, abort.
    spec::ChanCtrl c{};
    c.set_int_rearm(1).set_err_int_en(1).set_err_completion_en(1).set_any_err_abort_en(1);
    EXPECT_EQ(c.raw, 0x001Du);
    EXPECT_EQ(spec::chancmd::reset, 0x20u);
    EXPECT_EQ(spec::chancmd::suspend, 0x04u);
    EXPECT_EQ(spec::dmacap::fill, 0x40u);
    EXPECT_EQ(spec::dmacap::xor_op, 0x100u);
}

TEST(IoatSpecRegisters, CompletionStatusDecoding) {
    // A completion write-back: idle, last completed descriptor at IOVA 0x12345640.
    const spec::ChanSts done{0x12345640ull | 0x1};
    EXPECT_EQ(done.state(), spec::ChanState::idle);
    EXPECT_EQ(done.completed_descriptor(), 0x12345640u);
    EXPECT_TRUE(done.is_active_or_idle());
    EXPECT_FALSE(done.is_halted());
    EXPECT_STREQ(spec::chan_state_name(done.raw), "idle");

    const spec::ChanSts halted{0xFFFF000000001000ull | 0x3 | 0x10};
    EXPECT_TRUE(halted.is_halted());
    EXPECT_EQ(halted.soft_error(), 1u);
    EXPECT_EQ(halted.completed_descriptor(), 0xFFFF000000001000ull);
    EXPECT_STREQ(spec::chan_state_name(halted.raw), "halted");

    const auto made =
        spec::ChanSts::make(spec::ChanState::armed, 0x2000 | 0x3F);  // low bits dropped
    EXPECT_EQ(made.raw, 0x2004u);
    EXPECT_STREQ(spec::chan_state_name(0), "active");
    EXPECT_STREQ(spec::chan_state_name(2), "suspended");
    EXPECT_STREQ(spec::chan_state_name(4), "armed");
    EXPECT_STREQ(spec::chan_state_name(7), "unknown");
}

TEST(IoatSpecDescriptors, CopyAndFillLayout) {
    spec::DescControl ctl{};
    ctl.set_completion_update(1).set_fence(1);
    const auto copy = spec::make_copy(0x1000, 0x2000, 4096, ctl, 0x9040);
    EXPECT_EQ(copy.control.op(), static_cast<uint32_t>(spec::Op::copy));
    EXPECT_EQ(copy.control.raw, 0x18u);

    unsigned char bytes[64];
    std::memcpy(bytes, &copy, sizeof(bytes));
    EXPECT_EQ(bytes[0], 0x00);  // size 4096 = 0x1000, little-endian
    EXPECT_EQ(bytes[1], 0x10);
    EXPECT_EQ(bytes[4], 0x18);  // control
    EXPECT_EQ(bytes[8], 0x00);  // src 0x1000
    EXPECT_EQ(bytes[9], 0x10);
    EXPECT_EQ(bytes[17], 0x20);  // dest 0x2000
    EXPECT_EQ(bytes[24], 0x40);  // next 0x9040
    EXPECT_EQ(bytes[25], 0x90);

    const auto fill = spec::make_fill(0xDEADBEEFCAFEF00Dull, 0x3000, 512,
                                      spec::DescControl{}.set_int_enable(1), 0);
    EXPECT_EQ(fill.control.op(), 0x01u);
    EXPECT_EQ(fill.control.raw, 0x01000001u);
    // A fill seen through the generic view: the pattern sits where copy's source address does.
    const auto g = spec::descriptor_cast<spec::GenericDescriptor>(fill);
    EXPECT_EQ(g.src_addr, 0xDEADBEEFCAFEF00Dull);
    EXPECT_EQ(g.dest_addr, 0x3000u);
    EXPECT_EQ(g.size, 512u);
    EXPECT_EQ(g.control.op(), static_cast<uint32_t>(spec::Op::fill));
    const auto back = spec::descriptor_cast<spec::FillDescriptor>(g);
    EXPECT_EQ(back.src_data, fill.src_data);

    EXPECT_STREQ(spec::op_name(0x00), "copy");
    EXPECT_STREQ(spec::op_name(0x01), "fill");
    EXPECT_STREQ(spec::op_name(0x87), "xor");
    EXPECT_STREQ(spec::op_name(0x89), "pq");
    EXPECT_STREQ(spec::op_name(0x42), "unknown");
}

TEST(IoatSpecErrors, ChanerrNames) {
    EXPECT_EQ(spec::describe_chanerr(0), "none");
    EXPECT_EQ(spec::describe_chanerr(spec::chanerr::src_addr_err), "src_addr_err");
    EXPECT_EQ(spec::describe_chanerr(spec::chanerr::dest_addr_err | spec::chanerr::length_err),
              "dest_addr_err|length_err");
    EXPECT_EQ(spec::describe_chanerr(spec::chanerr::control_err | (1u << 21)), "control_err|bit21");
    EXPECT_EQ(spec::describe_chanerr(spec::chanerr::descriptor_count_err), "descriptor_count_err");
    EXPECT_EQ(spec::chanerr::all_known, 0x7FFFFu);

    // Every defined bit has a distinct name; undefined bits have none.
    std::set<std::string_view> names;
    for (unsigned bit = 0; bit < 32; ++bit) {
        const auto n = spec::chanerr_bit_name(bit);
        if (((spec::chanerr::all_known >> bit) & 1u) != 0) {
            EXPECT_FALSE(n.empty()) << bit;
            EXPECT_TRUE(names.insert(n).second) << n;
        } else {
            EXPECT_TRUE(n.empty()) << bit;
        }
    }
    EXPECT_EQ(names.size(), 19u);

    unsigned count = 0;
    spec::for_each_chanerr(0xFFFFFFFFu, [&count](unsigned, std::string_view) { ++count; });
    EXPECT_EQ(count, 32u);
}

TEST(IoatSpecPci, DeviceIds) {
    EXPECT_TRUE(spec::is_ioat_device(0x8086, spec::pci_device::skx));
    EXPECT_TRUE(spec::is_ioat_device(0x8086, 0x0B00));
    EXPECT_TRUE(spec::is_ioat_device(0x8086, 0x6F20));
    EXPECT_TRUE(spec::is_ioat_device(0x8086, 0x6F2F));
    EXPECT_FALSE(spec::is_ioat_device(0x8086, 0x6F28));
    EXPECT_TRUE(spec::is_ioat_device(0x8086, 0x3C27));
    EXPECT_TRUE(spec::is_ioat_device(0x8086, 0x0C53));
    EXPECT_FALSE(spec::is_ioat_device(0x8086, 0x0953));  // an NVMe SSD
    EXPECT_FALSE(spec::is_ioat_device(0x1B36, 0x2021));  // wrong vendor
}
