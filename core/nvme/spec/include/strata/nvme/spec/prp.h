// Physical Region Page rules (NVMe Base Specification 2.0, 4.3.1), shared by the driver that
// builds PRP lists and the model that walks them.
//
// Memory page size is CC.MPS: 4096 << MPS. PRP1 may carry an offset into its page (dword
// aligned); every later entry must be page aligned. A transfer spanning one page uses PRP1; two
// pages, PRP1 + PRP2; more, PRP2 points to a PRP list. A list page holds page_size / 8 entries;
// when more entries follow, the last slot of a list page points to the next list page.
#pragma once

#include <cstdint>

namespace strata::nvme::spec {

inline constexpr uint32_t prp_entry_bytes = 8;

constexpr uint64_t page_size_bytes(uint32_t mps) noexcept { return uint64_t{4096} << mps; }
constexpr uint64_t prp_entries_per_page(uint64_t page_size) noexcept {
    return page_size / prp_entry_bytes;
}
constexpr uint64_t prp_page_offset(uint64_t addr, uint64_t page_size) noexcept {
    return addr & (page_size - 1);
}

// PRP entries must be dword aligned (bits 1:0 zero); entries other than the first must also be
// page aligned.
constexpr bool prp_entry_valid(uint64_t addr, uint64_t page_size, bool first) noexcept {
    if ((addr & 0x3) != 0) return false;
    return first || prp_page_offset(addr, page_size) == 0;
}

// Number of memory pages (= PRP entries) a transfer of `len` bytes starting at `addr` touches.
constexpr uint64_t prp_count(uint64_t addr, uint64_t len, uint64_t page_size) noexcept {
    if (len == 0) return 0;
    const uint64_t offset = prp_page_offset(addr, page_size);
    return (offset + len + page_size - 1) / page_size;
}

// True when PRP2 must point to a PRP list (more than two entries).
constexpr bool prp_needs_list(uint64_t addr, uint64_t len, uint64_t page_size) noexcept {
    return prp_count(addr, len, page_size) > 2;
}

// Number of PRP list pages needed to hold `list_entries` entries (the entries after PRP1),
// counting the chain slot each full non-final list page gives up.
constexpr uint64_t prp_list_pages(uint64_t list_entries, uint64_t page_size) noexcept {
    const uint64_t per_page = prp_entries_per_page(page_size);
    if (list_entries == 0 || per_page < 2) return 0;
    if (list_entries <= per_page) return 1;
    // Each non-final page carries per_page - 1 data entries plus a chain pointer.
    return (list_entries - 1 + per_page - 2) / (per_page - 1);
}

}  // namespace strata::nvme::spec
