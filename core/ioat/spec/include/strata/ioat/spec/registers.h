// Intel I/OAT ("Crystal Beach") DMA engine registers, version 3.x, as used by SPDK's ioat
// driver and Linux drivers/dma/ioat. One PCI function per channel in v3; BAR0 holds the device
// registers (0x00..0x7F) followed by each channel's registers at 0x80 * (channel + 1).
// Strata drives and models v3 only (CBVER >= 0x30); earlier layouts differ (CHANCMD at 0x14).
#pragma once

#include <cstdint>

#include <strata/ioat/spec/bits.h>

namespace strata::ioat::spec {

// Device (global) register offsets in BAR0, with their widths.
namespace reg {
inline constexpr uint32_t chancnt = 0x00;        // 8:  number of channels (4:0)
inline constexpr uint32_t xfercap = 0x01;        // 8:  max transfer size, log2 (4:0)
inline constexpr uint32_t genctrl = 0x02;        // 8:  general control
inline constexpr uint32_t intrctrl = 0x03;       // 8:  interrupt control
inline constexpr uint32_t attnstatus = 0x04;     // 32: attention status, one bit per channel
inline constexpr uint32_t cbver = 0x08;          // 8:  Crystal Beach version (major 7:4, minor 3:0)
inline constexpr uint32_t perportoffset = 0x0A;  // 16
inline constexpr uint32_t intrdelay = 0x0C;      // 16: interrupt delay (13:0 us), coalescing (15)
inline constexpr uint32_t cs_status = 0x0E;      // 16: device status
inline constexpr uint32_t dmacapability = 0x10;  // 32: DMA capabilities (see dmacap)
inline constexpr uint32_t dcaoffset = 0x14;      // 16: offset of the DCA register block
}  // namespace reg

// Per-channel register offsets, relative to channel_base(chan).
namespace chan_reg {
inline constexpr uint32_t chanctrl = 0x00;     // 16: channel control (ChanCtrl)
inline constexpr uint32_t dma_comp = 0x02;     // 16: DMA compatibility
inline constexpr uint32_t chancmd = 0x04;      // 8:  channel command (chancmd::*)
inline constexpr uint32_t dmacount = 0x06;     // 16: descriptor count (written to submit)
inline constexpr uint32_t chansts = 0x08;      // 64: channel status (ChanSts)
inline constexpr uint32_t chainaddr = 0x10;    // 64: descriptor chain address
inline constexpr uint32_t chancmp = 0x18;      // 64: completion write-back address
inline constexpr uint32_t cdar = 0x20;         // 64: current descriptor address
inline constexpr uint32_t chanerr = 0x28;      // 32: channel error (RW1C, see errors.h)
inline constexpr uint32_t chanerrmask = 0x2C;  // 32: channel error mask
inline constexpr uint32_t dcactrl = 0x30;      // 32: DCA control
}  // namespace chan_reg

inline constexpr uint32_t channel_mmio_size = 0x80;
// BAR0 offset of channel `chan`'s register block.
constexpr uint32_t channel_base(uint32_t chan) noexcept { return channel_mmio_size * (chan + 1); }
// BAR0 offset of a channel register.
constexpr uint32_t channel_reg(uint32_t chan, uint32_t offset) noexcept {
    return channel_base(chan) + offset;
}

// PCI configuration space registers.
namespace pci_cfg {
inline constexpr uint32_t dmactrl = 0x48;
inline constexpr uint32_t dmauncerrsts = 0x148;
inline constexpr uint32_t chanerr_int = 0x180;  // channel error (integrity) — clear at init
inline constexpr uint32_t chanerrmask_int = 0x184;
}  // namespace pci_cfg

// CBVER values.
inline constexpr uint8_t ver_3_0 = 0x30;
inline constexpr uint8_t ver_3_2 = 0x32;
inline constexpr uint8_t ver_3_3 = 0x33;
inline constexpr uint8_t ver_3_4 = 0x34;
constexpr uint8_t ver_major(uint8_t cbver) noexcept { return cbver >> 4; }
constexpr uint8_t ver_minor(uint8_t cbver) noexcept { return cbver & 0xF; }

// XFERCAP: maximum bytes per descriptor. 0 means 4 GiB; 1..11 are invalid (the spec requires at
// least 4 KiB) and give 0 here, so a driver can refuse the device.
constexpr uint64_t xfercap_bytes(uint8_t xfercap) noexcept {
    const uint8_t v = xfercap & 0x1F;
    if (v == 0) return uint64_t{1} << 32;
    if (v < 12) return 0;
    return uint64_t{1} << v;
}

// GENCTRL / INTRCTRL bits.
namespace genctrl {
inline constexpr uint8_t debug_en = 0x01;
}
namespace intrctrl {
inline constexpr uint8_t master_int_en = 0x01;
inline constexpr uint8_t int_status = 0x02;  // ATTNSTATUS or a channel interrupt pending
inline constexpr uint8_t intr = 0x04;        // INT_STATUS and MASTER_INT_EN
inline constexpr uint8_t msix_vector_control = 0x08;
}  // namespace intrctrl

// DMACAPABILITY bits.
namespace dmacap {
inline constexpr uint32_t page_break = 1u << 0;
inline constexpr uint32_t crc = 1u << 1;
inline constexpr uint32_t skip_marker = 1u << 2;
inline constexpr uint32_t dca = 1u << 4;
inline constexpr uint32_t crc_move = 1u << 5;
inline constexpr uint32_t fill = 1u << 6;  // block fill
inline constexpr uint32_t apic = 1u << 7;
inline constexpr uint32_t xor_op = 1u << 8;
inline constexpr uint32_t pq = 1u << 9;
inline constexpr uint32_t dma_dif = 1u << 10;
inline constexpr uint32_t dwbes = 1u << 13;
inline constexpr uint32_t raid16ss = 1u << 17;
}  // namespace dmacap

// CHANCTRL — channel control (16 bits).
struct ChanCtrl {
    using value_type = uint16_t;
    value_type raw = 0;

    STRATA_IOAT_FIELD(int_rearm, 0, 1)          // re-arm the channel interrupt
    STRATA_IOAT_FIELD(err_completion_en, 2, 1)  // write completion status on error
    STRATA_IOAT_FIELD(any_err_abort_en, 3, 1)   // abort the chain on any error
    STRATA_IOAT_FIELD(err_int_en, 4, 1)         // interrupt on error
    STRATA_IOAT_FIELD(desc_addr_snoop_control, 5, 1)
    STRATA_IOAT_FIELD(channel_in_use, 8, 1)  // read: 0 = acquired, write 1 to release
    STRATA_IOAT_FIELD(compl_dca_en, 9, 1)
    STRATA_IOAT_FIELD(priority, 12, 4)

    friend constexpr bool operator==(ChanCtrl, ChanCtrl) noexcept = default;
};
static_assert(sizeof(ChanCtrl) == 2);

// CHANCMD — channel command bits (8-bit register, write one command at a time).
namespace chancmd {
inline constexpr uint8_t start = 0x01;
inline constexpr uint8_t append = 0x02;
inline constexpr uint8_t suspend = 0x04;
inline constexpr uint8_t abort = 0x08;
inline constexpr uint8_t resume = 0x10;
inline constexpr uint8_t reset = 0x20;
}  // namespace chancmd

// Channel state (CHANSTS bits 2:0).
enum class ChanState : uint8_t {
    active = 0x0,
    idle = 0x1,  // "done": all descriptors processed
    suspended = 0x2,
    halted = 0x3,  // stopped on an error: read CHANERR
    armed = 0x4,
};

// CHANSTS — channel status (64 bits). The completion write-back to CHANCMP has the same layout:
// state in bits 2:0, error flags, and the address of the last completed descriptor in 63:6
// (descriptors are 64-byte aligned).
struct ChanSts {
    using value_type = uint64_t;
    value_type raw = 0;

    STRATA_IOAT_FIELD(status, 0, 3)  // ChanState
    STRATA_IOAT_FIELD(unaffiliated_error, 3, 1)
    STRATA_IOAT_FIELD(soft_error, 4, 1)

    static constexpr value_type completed_descriptor_mask = ~value_type{0x3F};

    constexpr ChanState state() const noexcept { return static_cast<ChanState>(status()); }
    constexpr uint64_t completed_descriptor() const noexcept {
        return raw & completed_descriptor_mask;
    }
    constexpr ChanSts& set_completed_descriptor(uint64_t addr) noexcept {
        raw = (raw & ~completed_descriptor_mask) | (addr & completed_descriptor_mask);
        return *this;
    }
    constexpr bool is_halted() const noexcept { return state() == ChanState::halted; }
    constexpr bool is_active_or_idle() const noexcept {
        return state() == ChanState::active || state() == ChanState::idle;
    }

    static constexpr ChanSts make(ChanState s, uint64_t completed) noexcept {
        ChanSts v{};
        v.set_status(static_cast<value_type>(s)).set_completed_descriptor(completed);
        return v;
    }
    friend constexpr bool operator==(ChanSts, ChanSts) noexcept = default;
};
static_assert(sizeof(ChanSts) == 8);
// The completion address (CHANCMP) must be 64-bit aligned.
inline constexpr uint32_t chancmp_align_bytes = 8;

constexpr const char* chan_state_name(uint64_t status) noexcept {
    switch (status & 0x7) {
        case 0x0: return "active";
        case 0x1: return "idle";
        case 0x2: return "suspended";
        case 0x3: return "halted";
        case 0x4: return "armed";
        default: return "unknown";
    }
}

// PCI identity. Strata's model presents itself as a Skylake-SP channel (v3.2).
inline constexpr uint16_t pci_vendor_intel = 0x8086;
namespace pci_device {
inline constexpr uint16_t skx = 0x2021;
inline constexpr uint16_t icx = 0x0B00;
}  // namespace pci_device

// True for the I/OAT v3 channel device ids SPDK and Linux bind to (SNB, IVB, HSW, BWD, BDX-DE,
// BDX, SKX, ICX).
constexpr bool is_ioat_device(uint16_t vendor, uint16_t device) noexcept {
    if (vendor != pci_vendor_intel) return false;
    const auto in_family = [](uint16_t dev, uint16_t base) {
        return (dev >= base && dev <= base + 7) || dev == base + 0xE || dev == base + 0xF;
    };
    return in_family(device, 0x3C20) ||               // Sandy Bridge
           in_family(device, 0x0E20) ||               // Ivy Bridge
           in_family(device, 0x2F20) ||               // Haswell
           in_family(device, 0x6F20) ||               // Broadwell
           (device >= 0x0C50 && device <= 0x0C53) ||  // Avoton (BWD)
           (device >= 0x6F50 && device <= 0x6F53) ||  // Broadwell-DE
           device == pci_device::skx || device == pci_device::icx;
}

}  // namespace strata::ioat::spec
