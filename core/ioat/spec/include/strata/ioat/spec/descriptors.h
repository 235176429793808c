// I/OAT v3 hardware descriptors: 64 bytes each, 64-byte aligned, chained through `next` (the
// driver's ring links the last descriptor back to the first). Every format shares the first
// three fields (size, control, first address) and `next` at byte 24; the rest is op specific.
// Read a slot of unknown kind as GenericDescriptor, then descriptor_cast<> to the op's format.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <strata/ioat/spec/bits.h>

namespace strata::ioat::spec {

inline constexpr uint32_t descriptor_size_bytes = 64;

// Operation codes (control bits 31:24).
enum class Op : uint8_t {
    copy = 0x00,
    fill = 0x01,
    xor_gen = 0x87,
    xor_val = 0x88,
    pq = 0x89,
    pq_val = 0x8A,
    pq_update = 0x8B,
    pq_16s = 0xA0,
    pq_val_16s = 0xA1,
};

constexpr const char* op_name(uint8_t op) noexcept {
    switch (static_cast<Op>(op)) {
        case Op::copy: return "copy";
        case Op::fill: return "fill";
        case Op::xor_gen: return "xor";
        case Op::xor_val: return "xor_val";
        case Op::pq: return "pq";
        case Op::pq_val: return "pq_val";
        case Op::pq_update: return "pq_update";
        case Op::pq_16s: return "pq_16s";
        case Op::pq_val_16s: return "pq_val_16s";
    }
    return "unknown";
}

// Descriptor control word. Bits shared by all ops; some are op specific (noted).
struct DescControl {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_IOAT_FIELD(int_enable, 0, 1)         // interrupt on completion of this descriptor
    STRATA_IOAT_FIELD(src_snoop_disable, 1, 1)  // (reserved for fill)
    STRATA_IOAT_FIELD(dest_snoop_disable, 2, 1)
    STRATA_IOAT_FIELD(completion_update, 3, 1)  // write CHANSTS to CHANCMP after this one
    STRATA_IOAT_FIELD(fence, 4, 1)              // order against the following descriptors
    STRATA_IOAT_FIELD(null, 5, 1)               // copy: no data transfer (a no-op descriptor)
    STRATA_IOAT_FIELD(src_page_break, 6, 1)     // copy
    STRATA_IOAT_FIELD(dest_page_break, 7, 1)
    STRATA_IOAT_FIELD(bundle, 8, 1)
    STRATA_IOAT_FIELD(dest_dca, 9, 1)
    STRATA_IOAT_FIELD(hint, 10, 1)
    STRATA_IOAT_FIELD(src_count, 5, 3)   // xor / pq: number of sources (overlaps 5..7)
    STRATA_IOAT_FIELD(p_disable, 11, 1)  // pq
    STRATA_IOAT_FIELD(q_disable, 12, 1)  // pq
    STRATA_IOAT_FIELD(op, 24, 8)         // Op

    friend constexpr bool operator==(DescControl, DescControl) noexcept = default;
};
static_assert(sizeof(DescControl) == 4);

// The fields every format shares; op_specific depends on `control.op()`.
struct GenericDescriptor {
    uint32_t size;  // bytes to transfer (at most XFERCAP)
    DescControl control;
    uint64_t src_addr;  // fill: the 64-bit pattern
    uint64_t dest_addr;
    uint64_t next;  // IOVA of the next descriptor in the chain
    std::array<uint64_t, 4> op_specific;
};

// Copy (DMA) descriptor.
struct DmaDescriptor {
    uint32_t size;
    DescControl control;
    uint64_t src_addr;
    uint64_t dest_addr;
    uint64_t next;
    uint64_t reserved;
    uint64_t reserved2;
    uint64_t user1;  // software use, untouched by hardware
    uint64_t user2;
};

// Block fill descriptor: writes the 64-bit pattern repeatedly (little-endian) over `size` bytes.
struct FillDescriptor {
    uint32_t size;
    DescControl control;
    uint64_t src_data;  // the pattern
    uint64_t dest_addr;
    uint64_t next;
    uint64_t reserved;
    uint64_t next_dest_addr;
    uint64_t user1;
    uint64_t user2;
};

// XOR descriptor (up to 5 sources here; 8 with an XorExtDescriptor following).
struct XorDescriptor {
    uint32_t size;
    DescControl control;
    uint64_t src_addr;
    uint64_t dest_addr;
    uint64_t next;
    uint64_t src_addr2;
    uint64_t src_addr3;
    uint64_t src_addr4;
    uint64_t src_addr5;
};
struct XorExtDescriptor {
    uint64_t src_addr6;
    uint64_t src_addr7;
    uint64_t src_addr8;
    uint64_t next;
    std::array<uint64_t, 4> reserved;
};

// P+Q (RAID 6) descriptor and its extension.
struct PqDescriptor {
    uint32_t size;
    DescControl control;
    uint64_t src_addr;
    uint64_t p_addr;
    uint64_t next;
    uint64_t src_addr2;
    uint64_t src_addr3;
    std::array<uint8_t, 8> coef;
    uint64_t q_addr;
};
struct PqExtDescriptor {
    uint64_t src_addr4;
    uint64_t src_addr5;
    uint64_t src_addr6;
    uint64_t next;
    uint64_t src_addr7;
    uint64_t src_addr8;
    std::array<uint64_t, 2> reserved;
};

#define STRATA_IOAT_CHECK_DESC(T)                                              \
    static_assert(sizeof(T) == descriptor_size_bytes, #T " must be 64 bytes"); \
    static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>)
STRATA_IOAT_CHECK_DESC(GenericDescriptor);
STRATA_IOAT_CHECK_DESC(DmaDescriptor);
STRATA_IOAT_CHECK_DESC(FillDescriptor);
STRATA_IOAT_CHECK_DESC(XorDescriptor);
STRATA_IOAT_CHECK_DESC(XorExtDescriptor);
STRATA_IOAT_CHECK_DESC(PqDescriptor);
STRATA_IOAT_CHECK_DESC(PqExtDescriptor);
#undef STRATA_IOAT_CHECK_DESC

static_assert(offsetof(GenericDescriptor, control) == 4 &&
              offsetof(GenericDescriptor, src_addr) == 8);
static_assert(offsetof(GenericDescriptor, dest_addr) == 16 &&
              offsetof(GenericDescriptor, next) == 24);
static_assert(offsetof(DmaDescriptor, next) == 24 && offsetof(DmaDescriptor, user1) == 48);
static_assert(offsetof(FillDescriptor, src_data) == 8 && offsetof(FillDescriptor, next) == 24);
static_assert(offsetof(FillDescriptor, next_dest_addr) == 40);
static_assert(offsetof(XorDescriptor, src_addr5) == 56 && offsetof(XorExtDescriptor, next) == 24);
static_assert(offsetof(PqDescriptor, coef) == 48 && offsetof(PqDescriptor, q_addr) == 56);
static_assert(offsetof(PqExtDescriptor, next) == 24);

// Reinterpret a 64-byte descriptor as another format (a value copy; no aliasing questions).
template <typename To, typename From>
constexpr To descriptor_cast(const From& from) noexcept {
    static_assert(sizeof(To) == descriptor_size_bytes && sizeof(From) == descriptor_size_bytes);
    return std::bit_cast<To>(from);
}

// Builders for the two ops Strata's driver issues. `control_bits` may add int_enable, fence,
// completion_update ...; the op code is set here.
constexpr DmaDescriptor make_copy(uint64_t src, uint64_t dst, uint32_t size_bytes,
                                  DescControl control_bits, uint64_t next) noexcept {
    control_bits.set_op(static_cast<uint32_t>(Op::copy));
    return DmaDescriptor{size_bytes, control_bits, src, dst, next, 0, 0, 0, 0};
}
constexpr FillDescriptor make_fill(uint64_t pattern, uint64_t dst, uint32_t size_bytes,
                                   DescControl control_bits, uint64_t next) noexcept {
    control_bits.set_op(static_cast<uint32_t>(Op::fill));
    return FillDescriptor{size_bytes, control_bits, pattern, dst, next, 0, 0, 0, 0};
}

}  // namespace strata::ioat::spec
