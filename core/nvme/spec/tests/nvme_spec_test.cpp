// Tests for the NVMe spec headers: field accessors round-trip without touching neighbours,
// known raw values (QEMU's NVMe model) decode to the spec's fields, status codes decode to their
// names, and layout helpers (doorbells, PRP, identify) compute what the spec says.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <utility>

#include <strata/nvme/spec/spec.h>

namespace spec = strata::nvme::spec;

namespace {

// Checks one field of a register struct: setting all ones sets exactly `width` bits at `lsb`,
// clearing it on an all-ones register clears exactly those bits, and a value too wide is masked.
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
        set(wide, static_cast<T>(field_max + 1));  // one bit beyond the field: masked away
        EXPECT_EQ(wide.raw, T{0});
    }
    // A value in the middle of the range survives a round trip.
    Reg mid{};
    const T v = static_cast<T>(field_max / 2 + (width > 1 ? 1 : 0));
    set(mid, v);
    EXPECT_EQ(get(mid), v);
}

#define CHECK_FIELD(Reg, field, lsb, width)                                  \
    check_field<Reg>(                                                        \
        #Reg "." #field, lsb, width, [](const Reg& r) { return r.field(); }, \
        [](Reg& r, Reg::value_type v) { r.set_##field(v); })

}  // namespace

TEST(NvmeSpecRegisters, CapFieldsRoundTrip) {
    CHECK_FIELD(spec::Cap, mqes, 0, 16);
    CHECK_FIELD(spec::Cap, cqr, 16, 1);
    CHECK_FIELD(spec::Cap, ams, 17, 2);
    CHECK_FIELD(spec::Cap, to, 24, 8);
    CHECK_FIELD(spec::Cap, dstrd, 32, 4);
    CHECK_FIELD(spec::Cap, nssrs, 36, 1);
    CHECK_FIELD(spec::Cap, css, 37, 8);
    CHECK_FIELD(spec::Cap, bps, 45, 1);
    CHECK_FIELD(spec::Cap, cps, 46, 2);
    CHECK_FIELD(spec::Cap, mpsmin, 48, 4);
    CHECK_FIELD(spec::Cap, mpsmax, 52, 4);
    CHECK_FIELD(spec::Cap, pmrs, 56, 1);
    CHECK_FIELD(spec::Cap, cmbs, 57, 1);
    CHECK_FIELD(spec::Cap, nsss, 58, 1);
    CHECK_FIELD(spec::Cap, crms, 59, 2);
}

TEST(NvmeSpecRegisters, OtherRegisterFieldsRoundTrip) {
    CHECK_FIELD(spec::Vs, ter, 0, 8);
    CHECK_FIELD(spec::Vs, mnr, 8, 8);
    CHECK_FIELD(spec::Vs, mjr, 16, 16);
    CHECK_FIELD(spec::Cc, en, 0, 1);
    CHECK_FIELD(spec::Cc, css, 4, 3);
    CHECK_FIELD(spec::Cc, mps, 7, 4);
    CHECK_FIELD(spec::Cc, ams, 11, 3);
    CHECK_FIELD(spec::Cc, shn, 14, 2);
    CHECK_FIELD(spec::Cc, iosqes, 16, 4);
    CHECK_FIELD(spec::Cc, iocqes, 20, 4);
    CHECK_FIELD(spec::Cc, crime, 24, 1);
    CHECK_FIELD(spec::Csts, rdy, 0, 1);
    CHECK_FIELD(spec::Csts, cfs, 1, 1);
    CHECK_FIELD(spec::Csts, shst, 2, 2);
    CHECK_FIELD(spec::Csts, nssro, 4, 1);
    CHECK_FIELD(spec::Csts, pp, 5, 1);
    CHECK_FIELD(spec::Csts, st, 6, 1);
    CHECK_FIELD(spec::Aqa, asqs, 0, 12);
    CHECK_FIELD(spec::Aqa, acqs, 16, 12);
    CHECK_FIELD(spec::Cmbloc, bir, 0, 3);
    CHECK_FIELD(spec::Cmbloc, cqda, 8, 1);
    CHECK_FIELD(spec::Cmbloc, ofst, 12, 20);
    CHECK_FIELD(spec::Cmbsz, sqs, 0, 1);
    CHECK_FIELD(spec::Cmbsz, wds, 4, 1);
    CHECK_FIELD(spec::Cmbsz, szu, 8, 4);
    CHECK_FIELD(spec::Cmbsz, sz, 12, 20);
    CHECK_FIELD(spec::StatusField, p, 0, 1);
    CHECK_FIELD(spec::StatusField, sc, 1, 8);
    CHECK_FIELD(spec::StatusField, sct, 9, 3);
    CHECK_FIELD(spec::StatusField, crd, 12, 2);
    CHECK_FIELD(spec::StatusField, m, 14, 1);
    CHECK_FIELD(spec::StatusField, dnr, 15, 1);
}

TEST(NvmeSpecRegisters, CommandDwordFieldsRoundTrip) {
    CHECK_FIELD(spec::RwCdw12, nlb, 0, 16);
    CHECK_FIELD(spec::RwCdw12, dtype, 20, 4);
    CHECK_FIELD(spec::RwCdw12, deac, 25, 1);
    CHECK_FIELD(spec::RwCdw12, prinfo, 26, 4);
    CHECK_FIELD(spec::RwCdw12, fua, 30, 1);
    CHECK_FIELD(spec::RwCdw12, lr, 31, 1);
    CHECK_FIELD(spec::QueueCdw10, qid, 0, 16);
    CHECK_FIELD(spec::QueueCdw10, qsize, 16, 16);
    CHECK_FIELD(spec::CreateIoCqCdw11, pc, 0, 1);
    CHECK_FIELD(spec::CreateIoCqCdw11, ien, 1, 1);
    CHECK_FIELD(spec::CreateIoCqCdw11, iv, 16, 16);
    CHECK_FIELD(spec::CreateIoSqCdw11, qprio, 1, 2);
    CHECK_FIELD(spec::CreateIoSqCdw11, cqid, 16, 16);
    CHECK_FIELD(spec::IdentifyCdw10, cns, 0, 8);
    CHECK_FIELD(spec::IdentifyCdw10, cntid, 16, 16);
    CHECK_FIELD(spec::IdentifyCdw11, csi, 24, 8);
    CHECK_FIELD(spec::GetLogPageCdw10, lid, 0, 8);
    CHECK_FIELD(spec::GetLogPageCdw10, lsp, 8, 7);
    CHECK_FIELD(spec::GetLogPageCdw10, rae, 15, 1);
    CHECK_FIELD(spec::GetLogPageCdw10, numdl, 16, 16);
    CHECK_FIELD(spec::FeaturesCdw10, fid, 0, 8);
    CHECK_FIELD(spec::FeaturesCdw10, sel, 8, 3);
    CHECK_FIELD(spec::FeaturesCdw10, sv, 31, 1);
    CHECK_FIELD(spec::AbortCdw10, sqid, 0, 16);
    CHECK_FIELD(spec::AbortCdw10, cid, 16, 16);
    CHECK_FIELD(spec::NumberOfQueuesFeature, nsq, 0, 16);
    CHECK_FIELD(spec::NumberOfQueuesFeature, ncq, 16, 16);
    CHECK_FIELD(spec::ArbitrationFeature, ab, 0, 3);
    CHECK_FIELD(spec::ArbitrationFeature, hpw, 24, 8);
    CHECK_FIELD(spec::VolatileWriteCacheFeature, wce, 0, 1);
    CHECK_FIELD(spec::ErrorRecoveryFeature, dulbe, 16, 1);
    CHECK_FIELD(spec::AsyncEventConfigFeature, smart, 0, 8);
    CHECK_FIELD(spec::AsyncEventConfigFeature, nan, 8, 1);
    CHECK_FIELD(spec::KeepAliveTimerFeature, kato, 0, 32);
    CHECK_FIELD(spec::CommandEffects, csupp, 0, 1);
    CHECK_FIELD(spec::CommandEffects, cse, 16, 3);
}

TEST(NvmeSpecRegisters, DecodesQemuDefaultCap) {
    // QEMU's hw/nvme (7.x, no CMB/PMR) sets MQES 0x7ff, CQR 1, TO 0xf, CSS = NVM | I/O command
    // sets | admin only (0xC1) and MPSMAX 4; every other field 0.
    const spec::Cap cap{0x004018200F0107FFull};
    EXPECT_EQ(cap.mqes(), 0x7FFu);
    EXPECT_EQ(cap.max_queue_entries(), 2048u);
    EXPECT_EQ(cap.cqr(), 1u);
    EXPECT_EQ(cap.ams(), 0u);
    EXPECT_EQ(cap.to(), 0xFu);
    EXPECT_EQ(cap.timeout_ms(), 7500u);
    EXPECT_EQ(cap.dstrd(), 0u);
    EXPECT_EQ(cap.doorbell_stride_bytes(), 4u);
    EXPECT_EQ(cap.nssrs(), 0u);
    EXPECT_EQ(cap.css(), spec::Cap::css_nvm | spec::Cap::css_io_sets | spec::Cap::css_admin_only);
    EXPECT_EQ(cap.mpsmin(), 0u);
    EXPECT_EQ(cap.mpsmax(), 4u);
    EXPECT_EQ(cap.min_page_size_bytes(), 4096u);
    EXPECT_EQ(cap.max_page_size_bytes(), 65536u);
    EXPECT_EQ(cap.cmbs(), 0u);
    EXPECT_EQ(cap.pmrs(), 0u);
    EXPECT_EQ(cap.crms(), 0u);

    // Building the same value field by field gives the same raw register.
    spec::Cap built{};
    built.set_mqes(0x7FF).set_cqr(1).set_to(0xF).set_css(0xC1).set_mpsmax(4);
    EXPECT_EQ(built, cap);

    // Newer QEMU (8.x) also reports CRMS = CRWMS | CRIMS when the controller has no subsystem.
    const spec::Cap cap8{0x184018200F0107FFull};
    EXPECT_EQ(cap8.crms(), 3u);
    EXPECT_EQ(cap8.mqes(), 0x7FFu);
    EXPECT_EQ(cap8.mpsmax(), 4u);
}

TEST(NvmeSpecRegisters, TypicalDriverValues) {
    // What Linux and SPDK write to enable a controller with 4 KiB pages and 64/16-byte entries.
    spec::Cc cc{};
    cc.set_en(1)
        .set_css(spec::Cc::css_nvm)
        .set_mps(0)
        .set_ams(spec::Cc::ams_round_robin)
        .set_shn(spec::Cc::shn_none)
        .set_iosqes(spec::sqe_size_log2)
        .set_iocqes(spec::cqe_size_log2);
    EXPECT_EQ(cc.raw, 0x00460001u);
    EXPECT_EQ(cc.page_size_bytes(), 4096u);
    cc.set_shn(spec::Cc::shn_normal);
    EXPECT_EQ(cc.raw, 0x00464001u);

    const spec::Csts csts{0x9};  // RDY and shutdown complete
    EXPECT_EQ(csts.rdy(), 1u);
    EXPECT_EQ(csts.cfs(), 0u);
    EXPECT_EQ(csts.shst(), spec::Csts::shst_complete);
    EXPECT_FALSE(csts.all_ones());
    EXPECT_TRUE(spec::Csts{0xFFFFFFFFu}.all_ones());

    spec::Aqa aqa{};
    aqa.set_asqs(31).set_acqs(31);
    EXPECT_EQ(aqa.raw, 0x001F001Fu);

    const spec::Vs vs{0x00010400};
    EXPECT_EQ(vs.mjr(), 1u);
    EXPECT_EQ(vs.mnr(), 4u);
    EXPECT_EQ(vs.ter(), 0u);
    EXPECT_EQ(vs, spec::vs_1_4);
    EXPECT_LT(spec::vs_1_3, spec::vs_1_4);
    EXPECT_LT(spec::vs_1_4, spec::vs_2_0);
    EXPECT_EQ(spec::vs_2_0.raw, 0x00020000u);

    spec::Cmbsz cmbsz{};
    cmbsz.set_szu(2).set_sz(16);  // 16 x 1 MiB
    EXPECT_EQ(cmbsz.unit_bytes(), 1u << 20);
    EXPECT_EQ(cmbsz.size_bytes(), 16u << 20);
    EXPECT_EQ(spec::Cmbsz{}.set_szu(9).unit_bytes(), 0u);  // reserved unit
}

TEST(NvmeSpecRegisters, RegisterOffsetsAndDoorbells) {
    EXPECT_EQ(spec::reg::cap, 0x00u);
    EXPECT_EQ(spec::reg::vs, 0x08u);
    EXPECT_EQ(spec::reg::intms, 0x0Cu);
    EXPECT_EQ(spec::reg::intmc, 0x10u);
    EXPECT_EQ(spec::reg::cc, 0x14u);
    EXPECT_EQ(spec::reg::csts, 0x1Cu);
    EXPECT_EQ(spec::reg::nssr, 0x20u);
    EXPECT_EQ(spec::reg::aqa, 0x24u);
    EXPECT_EQ(spec::reg::asq, 0x28u);
    EXPECT_EQ(spec::reg::acq, 0x30u);
    EXPECT_EQ(spec::reg::cmbloc, 0x38u);
    EXPECT_EQ(spec::reg::cmbsz, 0x3Cu);

    // DSTRD 0: 4-byte stride.
    EXPECT_EQ(spec::sq_tail_doorbell(0, 0), 0x1000u);
    EXPECT_EQ(spec::cq_head_doorbell(0, 0), 0x1004u);
    EXPECT_EQ(spec::sq_tail_doorbell(1, 0), 0x1008u);
    EXPECT_EQ(spec::cq_head_doorbell(1, 0), 0x100Cu);
    // DSTRD 2: 16-byte stride.
    EXPECT_EQ(spec::sq_tail_doorbell(1, 2), 0x1020u);
    EXPECT_EQ(spec::cq_head_doorbell(1, 2), 0x1030u);
    // Largest queue id and stride do not overflow.
    EXPECT_EQ(spec::cq_head_doorbell(0xFFFF, 15), 0x1000u + (2ull * 0xFFFF + 1) * (4ull << 15));
}

TEST(NvmeSpecQueue, SqeLayoutAndAccessors) {
    spec::Sqe sqe{};
    sqe.opc = static_cast<uint8_t>(spec::NvmOpcode::write);
    sqe.cid = 0xBEEF;
    sqe.set_fuse(spec::Fuse::first).set_psdt(spec::Psdt::sgl_mptr_contig);
    EXPECT_EQ(sqe.fuse(), spec::Fuse::first);
    EXPECT_EQ(sqe.psdt(), spec::Psdt::sgl_mptr_contig);
    EXPECT_EQ(sqe.cdw0(), 0xBEEF0000u | (0x41u << 8) | 0x01u);
    sqe.set_fuse(spec::Fuse::normal);
    EXPECT_EQ(sqe.psdt(), spec::Psdt::sgl_mptr_contig) << "FUSE write touched PSDT";
    sqe.set_psdt(spec::Psdt::prp);
    EXPECT_EQ(sqe.flags, 0u);

    sqe.set_slba(0x123456789ABCull);
    EXPECT_EQ(sqe.cdw10, 0x56789ABCu);
    EXPECT_EQ(sqe.cdw11, 0x1234u);
    EXPECT_EQ(sqe.slba(), 0x123456789ABCull);

    // Byte image: opcode at 0, CID at 2, NSID at 4, PRP1 at 24, CDW10 at 40.
    sqe.nsid = 1;
    sqe.prp1 = 0x1122334455667788ull;
    unsigned char bytes[64];
    std::memcpy(bytes, &sqe, sizeof(bytes));
    EXPECT_EQ(bytes[0], 0x01);
    EXPECT_EQ(bytes[2], 0xEF);
    EXPECT_EQ(bytes[3], 0xBE);
    EXPECT_EQ(bytes[4], 0x01);
    EXPECT_EQ(bytes[24], 0x88);
    EXPECT_EQ(bytes[31], 0x11);
    EXPECT_EQ(bytes[40], 0xBC);
}

TEST(NvmeSpecQueue, SglDescriptorInDptr) {
    const auto d = spec::SglDescriptor::data_block(0xABCDEF000ull, 8192);
    EXPECT_EQ(d.type(), spec::SglType::data_block);
    EXPECT_EQ(d.subtype(), spec::SglSubtype::address);
    EXPECT_EQ(d.sgl_id, 0x00);
    const auto last = spec::SglDescriptor::segment(0x2000, 32, true);
    EXPECT_EQ(last.sgl_id, 0x30);
    EXPECT_EQ(spec::SglDescriptor::segment(0x2000, 32, false).sgl_id, 0x20);
    EXPECT_EQ(spec::SglDescriptor::bit_bucket(512).sgl_id, 0x10);

    spec::Sqe sqe{};
    sqe.set_psdt(spec::Psdt::sgl_mptr_contig).set_dptr_sgl(last);
    EXPECT_EQ(sqe.prp1, 0x2000u);
    EXPECT_EQ(sqe.prp2, 32u | (uint64_t{0x30} << 56));
    const auto back = sqe.dptr_sgl();
    EXPECT_EQ(back.address, 0x2000u);
    EXPECT_EQ(back.length, 32u);
    EXPECT_EQ(back.type(), spec::SglType::last_segment);

    spec::SglDescriptor keyed{0x1000, 0, {}, 0};
    keyed.set_type(spec::SglType::keyed_data_block, spec::SglSubtype::address)
        .set_keyed(0xABCDEF, 0x12345678);
    EXPECT_EQ(keyed.keyed_length(), 0xABCDEFu);
    EXPECT_EQ(keyed.key(), 0x12345678u);
    EXPECT_EQ(keyed.sgl_id, 0x40);
}

TEST(NvmeSpecQueue, CqeStatusDecoding) {
    spec::Cqe cqe{};
    cqe.cid = 7;
    cqe.sqhd = 3;
    cqe.status = 0x8005;  // P=1, SC=0x02 (invalid field), SCT=0, DNR=1
    EXPECT_EQ(cqe.p(), 1u);
    EXPECT_EQ(cqe.sc(), 0x02u);
    EXPECT_EQ(cqe.sct(), 0u);
    EXPECT_EQ(cqe.crd(), 0u);
    EXPECT_EQ(cqe.m(), 0u);
    EXPECT_EQ(cqe.dnr(), 1u);
    EXPECT_FALSE(cqe.ok());
    EXPECT_EQ(spec::status_name(cqe), "INVALID FIELD IN COMMAND");

    cqe.status = 0x0001;  // success, phase 1
    EXPECT_TRUE(cqe.ok());
    EXPECT_EQ(cqe.p(), 1u);

    // Media error: unrecovered read, SCT 2 SC 0x81 with More set.
    const auto sf = spec::StatusField::make(2, 0x81, false, true);
    EXPECT_EQ(sf.raw, (0x81u << 1) | (2u << 9) | (1u << 14));
    EXPECT_EQ(spec::make_status(spec::MediaStatus::unrecovered_read_error).sc(), 0x81u);
    EXPECT_EQ(spec::make_status(spec::MediaStatus::unrecovered_read_error).sct(), 2u);
    EXPECT_EQ(spec::make_status(spec::GenericStatus::lba_out_of_range, true).dnr(), 1u);
}

TEST(NvmeSpecStatus, NamesForRepresentativeCodes) {
    static_assert(spec::status_name(0, 0x02) ==
                  "INVALID FIELD IN COMMAND");  // usable at compile time
    EXPECT_EQ(spec::status_name(0, 0x00), "SUCCESS");
    EXPECT_EQ(spec::status_name(0, 0x01), "INVALID COMMAND OPCODE");
    EXPECT_EQ(spec::status_mnemonic(0, 0x02), "invalid_field");
    EXPECT_EQ(spec::status_name(0, 0x0B), "INVALID NAMESPACE OR FORMAT");
    EXPECT_EQ(spec::status_name(0, 0x80), "LBA OUT OF RANGE");
    EXPECT_EQ(spec::status_mnemonic(0, 0x80), "lba_out_of_range");
    EXPECT_EQ(spec::status_name(1, 0x01), "INVALID QUEUE IDENTIFIER");
    EXPECT_EQ(spec::status_name(1, 0x02), "INVALID QUEUE SIZE");
    EXPECT_EQ(spec::status_name(1, 0x0C), "INVALID QUEUE DELETION");
    EXPECT_EQ(spec::status_name(1, 0x82), "ATTEMPTED WRITE TO READ ONLY RANGE");
    EXPECT_EQ(spec::status_name(2, 0x80), "WRITE FAULT");
    EXPECT_EQ(spec::status_name(2, 0x81), "UNRECOVERED READ ERROR");
    EXPECT_EQ(spec::status_name(2, 0x82), "END-TO-END GUARD CHECK ERROR");
    EXPECT_EQ(spec::status_name(2, 0x85), "COMPARE FAILURE");
    EXPECT_EQ(spec::status_mnemonic(2, 0x85), "compare_failure");
    EXPECT_EQ(spec::status_name(2, 0x86), "ACCESS DENIED");
    EXPECT_EQ(spec::status_name(2, 0x87), "DEALLOCATED OR UNWRITTEN LOGICAL BLOCK");
    EXPECT_EQ(spec::status_name(3, 0x02), "ASYMMETRIC ACCESS INACCESSIBLE");
    EXPECT_EQ(spec::status_name(spec::make_status(spec::CommandSpecificStatus::invalid_log_page)),
              "INVALID LOG PAGE");
}

TEST(NvmeSpecStatus, UnknownCodes) {
    EXPECT_EQ(spec::status_name(0x7, 0xFF), "UNKNOWN (sct 0x7, sc 0xff)");
    EXPECT_EQ(spec::status_name(0x0, 0x17), "UNKNOWN (sct 0x0, sc 0x17)");  // reserved
    EXPECT_EQ(spec::status_name(0x4, 0x00), "UNKNOWN (sct 0x4, sc 0x0)");   // reserved SCT
    EXPECT_EQ(spec::status_mnemonic(0x7, 0xFF), "unknown");
    EXPECT_EQ(spec::find_status(0x2, 0x00), nullptr);
    // Out-of-range inputs are reported, never used to index anything.
    EXPECT_EQ(spec::status_name(0x1FF, 0x1234), "UNKNOWN (sct 0xff, sc 0x34)");
    const auto n = spec::status_name(0x7, 0xFF);
    EXPECT_EQ(std::string(n.c_str()), n.str());
    EXPECT_EQ(n.size(), n.view().size());
}

TEST(NvmeSpecStatus, TableIsConsistent) {
    std::set<std::pair<int, int>> codes;
    std::set<std::string_view> mnemonics;
    size_t per_sct[8] = {};
    for (const auto& s : spec::status_table()) {
        SCOPED_TRACE(std::string(s.name));
        EXPECT_TRUE(codes.insert({s.sct, s.sc}).second) << "duplicate code";
        EXPECT_TRUE(mnemonics.insert(s.mnemonic).second) << "duplicate mnemonic";
        ASSERT_LT(s.sct, 8);
        ++per_sct[s.sct];
        for (char c : s.name) EXPECT_FALSE(c >= 'a' && c <= 'z') << "name not upper case";
        for (char c : s.mnemonic) {
            EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
        }
        EXPECT_EQ(spec::status_name(s.sct, s.sc), s.name);
        EXPECT_EQ(spec::status_mnemonic(s.sct, s.sc), s.mnemonic);
        EXPECT_LT(spec::status_name(s.sct, s.sc).size(), 72u);
    }
    // Every generic code 0x00..0x24 except the reserved 0x17, NVM 0x80..0x84.
    EXPECT_EQ(per_sct[0], 0x25u - 1 + 5);
    // Command specific 0x00..0x2D except reserved 0x04 and 0x17, NVM 0x80..0x83, ZNS 0xB8..0xBF.
    EXPECT_EQ(per_sct[1], 0x2Eu - 2 + 4 + 8);
    EXPECT_EQ(per_sct[2], 9u);  // 0x80..0x88
    EXPECT_EQ(per_sct[3], 7u);
}

TEST(NvmeSpecStatus, EnumeratorsMatchMnemonics) {
    auto mn = [](auto code, spec::Sct sct) {
        return spec::status_mnemonic(static_cast<unsigned>(sct), static_cast<unsigned>(code));
    };
    EXPECT_EQ(mn(spec::GenericStatus::invalid_field, spec::Sct::generic), "invalid_field");
    EXPECT_EQ(mn(spec::GenericStatus::aborted_sq_deletion, spec::Sct::generic),
              "aborted_sq_deletion");
    EXPECT_EQ(mn(spec::GenericStatus::admin_media_not_ready, spec::Sct::generic),
              "admin_media_not_ready");
    EXPECT_EQ(mn(spec::GenericStatus::format_in_progress, spec::Sct::generic),
              "format_in_progress");
    EXPECT_EQ(mn(spec::CommandSpecificStatus::invalid_queue_id, spec::Sct::command_specific),
              "invalid_queue_id");
    EXPECT_EQ(mn(spec::CommandSpecificStatus::identifier_unavailable, spec::Sct::command_specific),
              "identifier_unavailable");
    EXPECT_EQ(
        mn(spec::CommandSpecificStatus::invalid_zone_state_transition, spec::Sct::command_specific),
        "invalid_zone_state_transition");
    EXPECT_EQ(mn(spec::MediaStatus::deallocated_or_unwritten_block, spec::Sct::media_error),
              "deallocated_or_unwritten_block");
    EXPECT_EQ(mn(spec::MediaStatus::storage_tag_check_error, spec::Sct::media_error),
              "storage_tag_check_error");
    EXPECT_EQ(mn(spec::PathStatus::aborted_by_host, spec::Sct::path), "aborted_by_host");
    EXPECT_EQ(spec::sct_name(2), "MEDIA AND DATA INTEGRITY");
    EXPECT_EQ(spec::sct_name(5), "RESERVED");
}

TEST(NvmeSpecOpcodes, ValuesNamesAndDirection) {
    EXPECT_EQ(static_cast<int>(spec::AdminOpcode::identify), 0x06);
    EXPECT_EQ(static_cast<int>(spec::AdminOpcode::doorbell_buffer_config), 0x7C);
    EXPECT_EQ(static_cast<int>(spec::AdminOpcode::format_nvm), 0x80);
    EXPECT_EQ(static_cast<int>(spec::NvmOpcode::dataset_management), 0x09);
    EXPECT_EQ(static_cast<int>(spec::NvmOpcode::write_zeroes), 0x08);
    EXPECT_EQ(spec::admin_opcode_name(0x06), "IDENTIFY");
    EXPECT_EQ(spec::admin_opcode_name(0x03), "UNKNOWN");
    EXPECT_EQ(spec::admin_opcode_name(0xC1), "VENDOR SPECIFIC");
    EXPECT_EQ(spec::nvm_opcode_name(0x02), "READ");
    EXPECT_EQ(spec::nvm_opcode_name(0x85), "VENDOR SPECIFIC");
    EXPECT_EQ(spec::opcode_direction(0x01), spec::DataDirection::host_to_controller);  // write
    EXPECT_EQ(spec::opcode_direction(0x02), spec::DataDirection::controller_to_host);  // read
    EXPECT_EQ(spec::opcode_direction(0x06), spec::DataDirection::controller_to_host);  // identify
    EXPECT_EQ(spec::opcode_direction(0x05), spec::DataDirection::host_to_controller);  // compare
    EXPECT_EQ(spec::opcode_direction(0x00), spec::DataDirection::none);                // flush
    EXPECT_EQ(static_cast<int>(spec::Cns::ns_id_desc_list), 0x03);
    EXPECT_EQ(static_cast<int>(spec::LogPage::changed_ns_list), 0x04);
    EXPECT_EQ(static_cast<int>(spec::FeatureId::volatile_write_cache), 0x06);
    EXPECT_EQ(static_cast<int>(spec::FeatureId::number_of_queues), 0x07);
    EXPECT_EQ(static_cast<int>(spec::FeatureId::async_event_config), 0x0B);
    EXPECT_EQ(spec::log_page_name(0x02), "SMART / Health Information");
    EXPECT_EQ(spec::log_page_name(0x40), "Unknown");
    EXPECT_EQ(spec::log_page_name(0xC5), "Vendor Specific");
    EXPECT_EQ(spec::feature_name(0x07), "Number of Queues");
    EXPECT_EQ(spec::feature_name(0x30), "Unknown");
}

TEST(NvmeSpecOpcodes, AsyncEventCompletion) {
    const auto aen = spec::AsyncEventCompletion::make(
        spec::AsyncEventType::notice,
        static_cast<uint8_t>(spec::AsyncNoticeInfo::ns_attribute_changed),
        spec::LogPage::changed_ns_list);
    EXPECT_EQ(aen.raw, 0x00040002u);
    EXPECT_EQ(aen.type(), spec::AsyncEventType::notice);
    EXPECT_EQ(aen.info(), 0u);
    EXPECT_EQ(aen.log_page(), 0x04u);
    const spec::AsyncEventCompletion smart{0x00020101};  // SMART, temperature threshold
    EXPECT_EQ(smart.type(), spec::AsyncEventType::smart_health);
    EXPECT_EQ(smart.info(), static_cast<uint8_t>(spec::AsyncSmartInfo::temperature_threshold));
    EXPECT_EQ(smart.log_page(), static_cast<uint8_t>(spec::LogPage::smart_health));
}

TEST(NvmeSpecCdw, TypicalCommandDwords) {
    // Read 8 blocks with FUA: NLB is 0's based.
    EXPECT_EQ(spec::RwCdw12{}.set_nlb(7).set_fua(1).raw, 0x40000007u);
    // Write Zeroes with deallocate.
    EXPECT_EQ(spec::RwCdw12{}.set_nlb(0).set_deac(1).raw, 1u << 25);
    // Create I/O CQ 1 with 256 entries, physically contiguous, interrupts off.
    EXPECT_EQ(spec::QueueCdw10{}.set_qid(1).set_qsize(255).raw, 0x00FF0001u);
    EXPECT_EQ(spec::CreateIoSqCdw11{}.set_pc(1).set_cqid(1).raw, 0x00010001u);
    // Identify controller.
    EXPECT_EQ(spec::IdentifyCdw10{}.set_cns(static_cast<uint32_t>(spec::Cns::ctrlr)).raw, 1u);
    // Get Log Page: SMART (512 bytes -> NUMD 127), retain async event.
    spec::GetLogPageCdw10 glp{};
    glp.set_lid(0x02).set_rae(1).set_numdl(spec::log_page_numd(512));
    EXPECT_EQ(glp.raw, 0x007F8002u);
    // Number of queues: request 4 SQ and 4 CQ (0's based 3); completion decodes the same way.
    EXPECT_EQ(spec::NumberOfQueuesFeature{}.set_nsq(3).set_ncq(3).raw, 0x00030003u);
    const spec::NumberOfQueuesFeature alloc{0x003F001F};
    EXPECT_EQ(alloc.nsq() + 1, 32u);
    EXPECT_EQ(alloc.ncq() + 1, 64u);
    EXPECT_EQ(spec::FeaturesCdw10{}.set_fid(0x06).set_sv(1).raw, 0x80000006u);
    EXPECT_EQ(spec::AbortCdw10{}.set_sqid(1).set_cid(0x42).raw, 0x00420001u);
    EXPECT_EQ(spec::DsmCdw11{}.set_ad(1).raw, 4u);
}

TEST(NvmeSpecIdentify, NamespaceFormatHelpers) {
    spec::IdentifyNamespace ns{};
    ns.nsze = 1 << 20;
    ns.nlbaf = 1;  // two formats
    ns.lbaf[0] = {0, 9, 2};
    ns.lbaf[1] = {8, 12, 0};
    ns.flbas = 0x11;  // format 1, metadata at the end of the LBA
    spec::LbaFormat f{};
    ASSERT_TRUE(ns.current_lba_format(f));
    EXPECT_EQ(f.data_size_bytes(), 4096u);
    EXPECT_EQ(f.ms, 8u);
    EXPECT_TRUE(ns.extended_lba());
    EXPECT_EQ(ns.lbaf[0].relative_performance(), 2u);

    ns.flbas = 0x02;  // beyond NLBAF: hostile or corrupt, refused
    EXPECT_FALSE(ns.current_lba_format(f));
    ns.flbas = 0x60;  // 2.0 upper index bits: format 48
    EXPECT_EQ(ns.flbas_index(), 48u);
    EXPECT_FALSE(ns.current_lba_format(f));
    ns.nlbaf = 0xFF;  // hostile count is clamped to the array
    EXPECT_EQ(ns.lba_format_count(), 64u);

    EXPECT_EQ((spec::LbaFormat{0, 8, 0}.data_size_bytes()), 0u);   // below 512 B
    EXPECT_EQ((spec::LbaFormat{0, 40, 0}.data_size_bytes()), 0u);  // absurd
    EXPECT_EQ((spec::LbaFormat{0, 9, 0}.data_size_bytes()), 512u);
}

TEST(NvmeSpecIdentify, ControllerHelpers) {
    spec::IdentifyController c{};
    const char sn[] = "STRATA0001          ";
    std::memcpy(c.sn.data(), sn, 20);
    EXPECT_EQ(spec::trimmed(c.sn), "STRATA0001");
    const char mn[] = "Strata NVMe";
    std::memcpy(c.mn.data(), mn, sizeof(mn) - 1);  // rest stays NUL
    EXPECT_EQ(spec::trimmed(c.mn), "Strata NVMe");
    c.fr.fill('X');  // no padding at all
    EXPECT_EQ(spec::trimmed(c.fr), "XXXXXXXX");

    EXPECT_EQ(c.mdts_bytes(4096), 0u);  // no limit
    c.mdts = 5;
    EXPECT_EQ(c.mdts_bytes(4096), 128u * 1024);
    c.mdts = 0xFF;
    EXPECT_EQ(c.mdts_bytes(4096), uint64_t{1} << 62);  // saturated, not overflowed

    c.sqes = 0x66;
    c.cqes = 0x44;
    EXPECT_EQ(c.sqes_min(), 6u);
    EXPECT_EQ(c.sqes_max(), 6u);
    EXPECT_EQ(c.cqes_min(), 4u);
    c.vwc = 1;
    EXPECT_TRUE(c.vwc_present());
    c.sgls = 0x1;
    EXPECT_TRUE(c.sgl_supported());
    c.tnvmcap.set(0x1000, 0);
    EXPECT_EQ(c.tnvmcap.lo(), 0x1000u);

    spec::PowerStateDescriptor ps{};
    ps.flags = 0x2;
    EXPECT_TRUE(ps.nops());
    EXPECT_FALSE(ps.mxps());
    EXPECT_EQ(spec::nid_length(spec::NidType::nguid), 16u);
    EXPECT_EQ(spec::nid_length(static_cast<spec::NidType>(9)), 0u);
}

TEST(NvmeSpecLogPages, SmartAndErrorLog) {
    spec::SmartHealthLog smart{};
    smart.composite_temperature.set(0x0134);  // 308 K
    unsigned char bytes[512];
    std::memcpy(bytes, &smart, sizeof(bytes));
    EXPECT_EQ(bytes[1], 0x34);
    EXPECT_EQ(bytes[2], 0x01);
    EXPECT_EQ(smart.composite_temperature.get(), 308u);

    smart.data_units_read.set(5, 0);
    EXPECT_EQ(smart.data_units_read.saturated(), 5u);
    smart.power_on_hours.set(1, 1);
    EXPECT_EQ(smart.power_on_hours.saturated(), ~uint64_t{0});
    EXPECT_EQ(smart.power_on_hours.hi(), 1u);

    spec::ErrorInfoEntry e{};
    e.parameter_location = 0x0528;  // byte 0x28 (CDW10), bit 5
    EXPECT_EQ(e.parameter_byte(), 0x28u);
    EXPECT_EQ(e.parameter_bit(), 5u);

    spec::ChangedNsList changed{};
    EXPECT_FALSE(changed.overflowed());
    changed.nsid[0] = spec::ChangedNsList::overflow;
    EXPECT_TRUE(changed.overflowed());
}

TEST(NvmeSpecPrp, PageArithmetic) {
    EXPECT_EQ(spec::page_size_bytes(0), 4096u);
    EXPECT_EQ(spec::page_size_bytes(4), 65536u);
    EXPECT_EQ(spec::prp_entries_per_page(4096), 512u);

    constexpr uint64_t pg = 4096;
    EXPECT_EQ(spec::prp_count(0x1000, 0, pg), 0u);
    EXPECT_EQ(spec::prp_count(0x1000, 4096, pg), 1u);
    EXPECT_EQ(spec::prp_count(0x1800, 4096, pg), 2u);
    EXPECT_EQ(spec::prp_count(0x1000, 8192, pg), 2u);
    EXPECT_EQ(spec::prp_count(0x1800, 8192, pg), 3u);
    EXPECT_FALSE(spec::prp_needs_list(0x1000, 8192, pg));
    EXPECT_TRUE(spec::prp_needs_list(0x1800, 8192, pg));
    EXPECT_EQ(spec::prp_count(0x1004, 1, pg), 1u);
    EXPECT_EQ(spec::prp_count(0x1FFC, 8, pg), 2u);

    EXPECT_TRUE(spec::prp_entry_valid(0x1004, pg, true));
    EXPECT_FALSE(spec::prp_entry_valid(0x1004, pg, false));  // later entries are page aligned
    EXPECT_FALSE(spec::prp_entry_valid(0x1002, pg, true));   // dword alignment
    EXPECT_TRUE(spec::prp_entry_valid(0x2000, pg, false));

    // List pages: 512 entries fit one page; beyond that each full page gives a slot to the chain.
    EXPECT_EQ(spec::prp_list_pages(0, pg), 0u);
    EXPECT_EQ(spec::prp_list_pages(1, pg), 1u);
    EXPECT_EQ(spec::prp_list_pages(512, pg), 1u);
    EXPECT_EQ(spec::prp_list_pages(513, pg), 2u);
    EXPECT_EQ(spec::prp_list_pages(1023, pg), 2u);
    EXPECT_EQ(spec::prp_list_pages(1024, pg), 3u);
}

TEST(NvmeSpecBits, UnalignedAndWideHelpers) {
    spec::UnalignedLe<uint32_t> u{};
    u.set(0xA1B2C3D4u);
    EXPECT_EQ(u.bytes[0], 0xD4);
    EXPECT_EQ(u.bytes[3], 0xA1);
    EXPECT_EQ(u.get(), 0xA1B2C3D4u);
    spec::Uint128Le w{};
    w.set(0x0102030405060708ull, 0x1112131415161718ull);
    EXPECT_EQ(w.bytes[0], 0x08);
    EXPECT_EQ(w.bytes[15], 0x11);
    EXPECT_EQ(w.lo(), 0x0102030405060708ull);
    EXPECT_EQ(w.hi(), 0x1112131415161718ull);
    static_assert(strata::bits::mask<uint64_t>(64) == ~uint64_t{0});
    static_assert(strata::bits::mask<uint16_t>(3) == 7);
}

TEST(NvmeSpecCommands, IoBuilders) {
    constexpr auto rd = spec::make_read(5, 1, 0x1000, 8);
    static_assert(rd.opc == 0x02 && rd.cdw12 == 7);  // constexpr: usable in tables and tests
    EXPECT_EQ(rd.cid, 5u);
    EXPECT_EQ(rd.nsid, 1u);
    EXPECT_EQ(rd.slba(), 0x1000u);
    EXPECT_EQ(rd.flags, 0u);

    const auto wr = spec::make_write(6, 1, 0x1'0000'0000ull, 65536, true);
    EXPECT_EQ(wr.opc, 0x01u);
    EXPECT_EQ(wr.cdw10, 0u);
    EXPECT_EQ(wr.cdw11, 1u);
    EXPECT_EQ(spec::RwCdw12{wr.cdw12}.nlb(), 0xFFFFu);
    EXPECT_EQ(spec::RwCdw12{wr.cdw12}.fua(), 1u);

    const auto wz = spec::make_write_zeroes(7, 2, 10, 1, true);
    EXPECT_EQ(wz.opc, 0x08u);
    EXPECT_EQ(wz.cdw12, 1u << 25);

    const auto fl = spec::make_flush(8, spec::nsid_all);
    EXPECT_EQ(fl.opc, 0x00u);
    EXPECT_EQ(fl.nsid, 0xFFFFFFFFu);

    const auto dsm = spec::make_dsm(9, 1, 256);
    EXPECT_EQ(dsm.opc, 0x09u);
    EXPECT_EQ(dsm.cdw10, 0xFFu);
    EXPECT_EQ(dsm.cdw11, 4u);
}

TEST(NvmeSpecCommands, AdminBuilders) {
    const auto id = spec::make_identify(1, spec::Cns::ns, 3);
    EXPECT_EQ(id.opc, 0x06u);
    EXPECT_EQ(id.nsid, 3u);
    EXPECT_EQ(id.cdw10, 0u);
    EXPECT_EQ(spec::make_identify(1, spec::Cns::ctrlr).cdw10, 1u);
    EXPECT_EQ(spec::make_identify(1, spec::Cns::cs_ns, 1, 0, spec::Csi::zoned).cdw11, 2u << 24);

    const auto cq = spec::make_create_io_cq(2, 1, 1024, 0xA000);
    EXPECT_EQ(cq.opc, 0x05u);
    EXPECT_EQ(cq.prp1, 0xA000u);
    EXPECT_EQ(cq.cdw10, (1023u << 16) | 1u);
    EXPECT_EQ(cq.cdw11, 1u);  // PC, interrupts off
    const auto sq = spec::make_create_io_sq(3, 1, 1024, 0xB000, 1);
    EXPECT_EQ(sq.opc, 0x01u);
    EXPECT_EQ(sq.cdw10, (1023u << 16) | 1u);
    EXPECT_EQ(sq.cdw11, (1u << 16) | 1u);
    EXPECT_EQ(spec::make_delete_io_sq(4, 7).cdw10, 7u);
    EXPECT_EQ(spec::make_delete_io_cq(4, 7).opc, 0x04u);

    const auto log = spec::make_get_log_page(5, spec::LogPage::error_info, spec::nsid_all, 64 * 256,
                                             0x1'0000'0040ull, true);
    EXPECT_EQ(log.opc, 0x02u);
    const spec::GetLogPageCdw10 c10{log.cdw10};
    EXPECT_EQ(c10.lid(), 0x01u);
    EXPECT_EQ(c10.rae(), 1u);
    EXPECT_EQ(c10.numdl(), 64u * 256 / 4 - 1);
    EXPECT_EQ(log.cdw11, 0u);
    EXPECT_EQ(log.cdw12, 0x40u);
    EXPECT_EQ(log.cdw13, 1u);
    // A transfer above 256 KiB spills NUMD into NUMDU.
    const auto big = spec::make_get_log_page(5, spec::LogPage::telemetry_host, 0, 1u << 20);
    EXPECT_EQ(spec::GetLogPageCdw10{big.cdw10}.numdl(), 0xFFFFu);
    EXPECT_EQ(spec::GetLogPageCdw11{big.cdw11}.numdu(), 3u);

    const auto nq = spec::make_set_number_of_queues(6, 4, 4);
    EXPECT_EQ(nq.opc, 0x09u);
    EXPECT_EQ(nq.cdw10, 0x07u);
    EXPECT_EQ(nq.cdw11, 0x00030003u);
    const auto vwc = spec::make_set_features(6, spec::FeatureId::volatile_write_cache, 1, 0, true);
    EXPECT_EQ(vwc.cdw10, 0x80000006u);
    const auto gf = spec::make_get_features(6, spec::FeatureId::arbitration, 0,
                                            spec::FeatureSelect::supported_capabilities);
    EXPECT_EQ(gf.opc, 0x0Au);
    EXPECT_EQ(gf.cdw10, 0x301u);

    EXPECT_EQ(spec::make_abort(7, 1, 0x55).cdw10, 0x00550001u);
    EXPECT_EQ(spec::make_async_event_request(8).opc, 0x0Cu);
    EXPECT_EQ(spec::make_keep_alive(9).opc, 0x18u);
}

// NVMe/TCP PDUs: byte images as Linux's nvme-tcp and SPDK put them on the wire.
TEST(NvmeSpecTcp, PduByteImages) {
    namespace tcp = spec::tcp;
    // An ICReq with HPDA 0, both digests, MAXR2T 0 (one R2T): 00 00 80 00 80000000 0000 00 03 ...
    tcp::IcReq req{};
    req.ch = {static_cast<uint8_t>(tcp::PduType::ic_req), 0, tcp::ic_pdu_size, 0, tcp::ic_pdu_size};
    req.dgst = tcp::dgst::hdgst_enable | tcp::dgst::ddgst_enable;
    uint8_t b[128];
    std::memcpy(b, &req, sizeof b);
    EXPECT_EQ(b[0], 0x00);
    EXPECT_EQ(b[2], 0x80);
    EXPECT_EQ(b[4], 0x80);
    EXPECT_EQ(b[11], 0x03);

    // A TermReq with FES 1 and FEI 0x04030201: FEI sits at bytes 10..13, little-endian.
    tcp::TermReq term{};
    term.fes = static_cast<uint16_t>(tcp::Fes::invalid_header_field);
    term.fei.set(0x04030201u);
    uint8_t t[24];
    std::memcpy(t, &term, sizeof t);
    EXPECT_EQ(t[8], 0x01);
    EXPECT_EQ(t[9], 0x00);
    EXPECT_EQ(t[10], 0x01);
    EXPECT_EQ(t[13], 0x04);
    EXPECT_EQ(term.status(), tcp::Fes::invalid_header_field);

    // Header lengths per type; unknown types are recognised.
    EXPECT_EQ(tcp::expected_hlen(tcp::PduType::capsule_cmd), 72u);
    EXPECT_EQ(tcp::expected_hlen(tcp::PduType::capsule_resp), 24u);
    EXPECT_TRUE(tcp::pdu_type_known(9));
    EXPECT_FALSE(tcp::pdu_type_known(8));
    EXPECT_FALSE(tcp::pdu_type_known(0x10));

    // PDO: header + digest rounded up to (PDA + 1) dwords.
    EXPECT_EQ(tcp::data_offset(72, false, 0), 72u);
    EXPECT_EQ(tcp::data_offset(24, true, 0), 28u);
    EXPECT_EQ(tcp::data_offset(24, true, 7), 32u);

    // SGLs: in-capsule (Data Block, Offset) is 0x01, transport (Transport Data Block, Transport
    // Specific) 0x5A, in SGL byte 15.
    spec::Sqe sqe{};
    sqe.set_dptr_sgl(tcp::make_transport_sgl(8192));
    EXPECT_EQ(sqe.prp2 >> 56, 0x5Au);
    EXPECT_EQ(sqe.dptr_sgl().length, 8192u);
    sqe.set_dptr_sgl(tcp::make_in_capsule_sgl(512));
    EXPECT_EQ(sqe.prp2 >> 56, 0x01u);
}
