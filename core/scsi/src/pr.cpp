// Persistent reservations (SPC-4 5.12, 6.15, 6.16): registrations and the reservation of a LUN,
// per I_T nexus, kept in memory (APTPL is not supported: PTPL_C is 0). SPC-2 reservations
// (RESERVE/RELEASE (6) and (10)): one I_T nexus holds the whole LUN.
#include <algorithm>
#include <cstring>
#include <string_view>

#include "internal.h"

namespace strata::scsi {

namespace {

enum : uint8_t {
    kWriteExclusive = 1,
    kExclusiveAccess = 3,
    kWriteExclusiveRegistrantsOnly = 5,
    kExclusiveAccessRegistrantsOnly = 6,
    kWriteExclusiveAllRegistrants = 7,
    kExclusiveAccessAllRegistrants = 8,
};

bool valid_type(uint8_t type) {
    return type == 1 || type == 3 || type == 5 || type == 6 || type == 7 || type == 8;
}
bool all_registrants(uint8_t type) { return type == 7 || type == 8; }

PrRegistration* find_reg(Lun& lun, uint32_t nexus) {
    for (auto& r : lun.regs)
        if (r.nexus == nexus) return &r;
    return nullptr;
}
bool registered(const Lun& lun, uint32_t nexus) {
    return std::any_of(lun.regs.begin(), lun.regs.end(),
                       [&](const PrRegistration& r) { return r.nexus == nexus; });
}
bool is_holder(const Lun& lun, uint32_t nexus) {
    if (!lun.reserved) return false;
    return all_registrants(lun.res_type) ? registered(lun, nexus) : lun.holder == nexus;
}

void conflict(Task& t) {
    t.status = status::reservation_conflict;
    complete(t);
}

void release_reservation(Lun& lun) {
    lun.reserved = false;
    lun.res_type = 0;
    lun.res_key = 0;
}

// Removes `nexus`'s registration (and a reservation it held alone).
void unregister(Lun& lun, uint32_t nexus) {
    std::erase_if(lun.regs, [&](const PrRegistration& r) { return r.nexus == nexus; });
    if (!lun.reserved) return;
    if (all_registrants(lun.res_type) ? lun.regs.empty() : lun.holder == nexus) {
        const uint8_t type = lun.res_type;
        release_reservation(lun);
        // Registrants-only types tell the remaining registrants (SPC-4 5.12.11.2.2).
        if (type == kWriteExclusiveRegistrantsOnly || type == kExclusiveAccessRegistrantsOnly)
            for (auto& r : lun.regs) lun.ua[r.nexus] |= ua_reservations_released;
    }
}

}  // namespace

bool reservation_conflict(const Lun& lun, uint32_t nexus, uint8_t op) noexcept {
    if (lun.spc2_reserved && lun.spc2_holder != nexus) {
        // SPC-2 5.5.1: everything but these conflicts (REPORT LUNS and REQUEST SENSE never get
        // here); RELEASE from another nexus is GOOD and does nothing.
        switch (op) {
            case 0x12: case 0x4D: case 0x17: case 0x57: return false;
            default: return true;
        }
    }
    if (!lun.reserved || is_holder(lun, nexus)) return false;
    bool write = false, read = false;
    switch (op) {
        case 0x0A: case 0x2A: case 0xAA: case 0x8A: case 0x41: case 0x93: case 0x42: case 0x89:
        case 0x35: case 0x91: case 0x15: case 0x55: case 0x2E: case 0xAE: case 0x8E: case 0x8B:
            write = true;
            break;
        case 0x08: case 0x28: case 0xA8: case 0x88: case 0x2F: case 0xAF: case 0x8F: case 0x1A:
        case 0x5A: case 0x34: case 0x90:
            read = true;
            break;
        default: return false;  // INQUIRY, REPORT LUNS, PR IN/OUT, TUR, READ CAPACITY, ...
    }
    const bool reg = registered(lun, nexus);
    switch (lun.res_type) {
        case kWriteExclusive: return write;
        case kExclusiveAccess: return write || read;
        case kWriteExclusiveRegistrantsOnly:
        case kWriteExclusiveAllRegistrants: return write && !reg;
        case kExclusiveAccessRegistrantsOnly:
        case kExclusiveAccessAllRegistrants: return (write || read) && !reg;
        default: return false;
    }
}

void execute_pr_in(Task& t) noexcept {
    Lun& lun = *t.priv.lun;
    const uint8_t sa = t.cdb[1] & 0x1F;
    const uint16_t alloc = be16(t.cdb + 7);
    // READ FULL STATUS: 24 bytes per registrant and its TransportID (an iSCSI port name of at
    // most 223 + 20 bytes); a full list is cut at the buffer as at the allocation length.
    uint8_t d[8192] = {};
    size_t n = 0;
    switch (sa) {
        case 0x00: {  // READ KEYS
            put_be32(d, lun.pr_generation);
            n = 8;
            for (const auto& r : lun.regs) {
                if (n + 8 > sizeof(d)) break;
                put_be64(d + n, r.key);
                n += 8;
            }
            put_be32(d + 4, uint32_t(lun.regs.size() * 8));
            break;
        }
        case 0x01:  // READ RESERVATION
            put_be32(d, lun.pr_generation);
            n = 8;
            if (lun.reserved) {
                put_be32(d + 4, 16);
                put_be64(d + 8, all_registrants(lun.res_type) ? 0 : lun.res_key);
                d[21] = lun.res_type & 0x0F;  // scope 0: LU_SCOPE
                n = 24;
            }
            break;
        case 0x02:  // REPORT CAPABILITIES
            put_be16(d, 8);
            // byte 2: no CRH (RESERVE and RELEASE conflict while any registration exists, as
            // SPC-2 says), SIP_C, ATP_C or PTPL_C
            d[3] = 0x80;  // TMV: the type mask is valid
            d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
            d[5] = 0x01;
            n = 8;
            break;
        case 0x03: {  // READ FULL STATUS (SPC-4 6.16.5)
            put_be32(d, lun.pr_generation);
            n = 8;
            size_t total = 0;  // ADDITIONAL LENGTH counts every descriptor, sent or not
            const Device& dev = *t.priv.dev;
            for (const auto& r : lun.regs) {
                const std::string_view port =
                    r.nexus < dev.nexuses.size() ? std::string_view(dev.nexuses[r.nexus]) : "";
                // TransportID, iSCSI, format 01b: "<name>,i,0x<ISID>", NUL-terminated, padded
                // to a multiple of 4, at least 20 bytes (SPC-4 7.6.4.6).
                const size_t tid_len = std::max<size_t>(20, (4 + port.size() + 1 + 3) & ~size_t{3});
                const size_t len = 24 + tid_len;
                total += len;
                if (n + len > sizeof(d)) continue;
                uint8_t* p = d + n;
                put_be64(p, r.key);
                const bool holder = is_holder(lun, r.nexus);
                p[12] = holder ? 0x01 : 0x00;  // R_HOLDER; ALL_TG_PT 0
                if (holder) p[13] = lun.res_type & 0x0F;  // scope 0: LU_SCOPE
                put_be16(p + 18, 1);                     // relative target port identifier
                put_be32(p + 20, uint32_t(tid_len));
                p[24] = 0x40 | 0x05;  // format 01b, protocol identifier 5h (iSCSI)
                put_be16(p + 26, uint16_t(tid_len - 4));
                std::memcpy(p + 28, port.data(), port.size());
                n += len;
            }
            put_be32(d + 4, uint32_t(total));
            break;
        }
        default:
            invalid_cdb_field(t, 1, 4);
            return complete(t);
    }
    data_in(t, d, std::min<size_t>(n, alloc));
    complete(t);
}

void execute_pr_out(Task& t) noexcept {
    Lun& lun = *t.priv.lun;
    const uint32_t me = t.priv.nexus;
    const uint8_t sa = t.cdb[1] & 0x1F;
    const uint8_t scope = t.cdb[2] >> 4;
    const uint8_t type = t.cdb[2] & 0x0F;
    const uint32_t plen = be32(t.cdb + 5);
    if (sa > 0x06) return invalid_cdb_field(t, 1, 4), complete(t);  // incl. REGISTER AND MOVE
    if (plen != 24) {
        set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
        return complete(t);
    }
    uint8_t p[24] = {};
    if (data_out(t, p, 24) != 24) {
        set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
        return complete(t);
    }
    t.data_transferred = 24;
    const uint64_t key = be64(p), sa_key = be64(p + 8);
    if (p[20] & 0x08) return invalid_param_field(t, 20, 3), complete(t);  // SPEC_I_PT
    if (p[20] & 0x04) return invalid_param_field(t, 20, 2), complete(t);  // ALL_TG_PT
    if (p[20] & 0x01) return invalid_param_field(t, 20, 0), complete(t);  // APTPL
    PrRegistration* reg = find_reg(lun, me);

    if (sa == 0x00 || sa == 0x06) {  // REGISTER, REGISTER AND IGNORE EXISTING KEY
        if (sa == 0x00 && (reg == nullptr ? key != 0 : key != reg->key)) return conflict(t);
        if (sa_key == 0) {
            if (reg != nullptr) {
                unregister(lun, me);
                ++lun.pr_generation;
            }
        } else if (reg != nullptr) {
            reg->key = sa_key;
            ++lun.pr_generation;
        } else {
            if (lun.regs.size() >= 64) {
                set_sense(t, SenseKey::illegal_request, asc::insufficient_registration_resources);
                return complete(t);
            }
            lun.regs.push_back({me, sa_key});
            ++lun.pr_generation;
        }
        return complete(t);
    }
    // Every other service action needs this nexus registered with the key it gives.
    if (reg == nullptr || reg->key != key) return conflict(t);
    switch (sa) {
        case 0x01:  // RESERVE
            if (scope != 0) return invalid_cdb_field(t, 2, 7), complete(t);
            if (!valid_type(type)) return invalid_cdb_field(t, 2, 3), complete(t);
            if (lun.reserved) {
                if (is_holder(lun, me) && lun.res_type == type) return complete(t);
                return conflict(t);
            }
            lun.reserved = true;
            lun.res_type = type;
            lun.holder = me;
            lun.res_key = key;
            return complete(t);
        case 0x02: {  // RELEASE
            if (!lun.reserved || !is_holder(lun, me)) return complete(t);
            if (scope != 0 || lun.res_type != type) {
                set_sense(t, SenseKey::illegal_request, 0x2604);  // INVALID RELEASE OF PR
                return complete(t);
            }
            const uint8_t old = lun.res_type;
            release_reservation(lun);
            if (old == kWriteExclusiveRegistrantsOnly || old == kExclusiveAccessRegistrantsOnly ||
                all_registrants(old))
                for (auto& r : lun.regs)
                    if (r.nexus != me) lun.ua[r.nexus] |= ua_reservations_released;
            return complete(t);
        }
        case 0x03:  // CLEAR
            for (auto& r : lun.regs)
                if (r.nexus != me) lun.ua[r.nexus] |= ua_reservations_preempted;
            lun.regs.clear();
            release_reservation(lun);
            ++lun.pr_generation;
            return complete(t);
        case 0x04:    // PREEMPT
        case 0x05: {  // PREEMPT AND ABORT (the preempted nexuses' tasks are not aborted)
            auto preempt_key = [&](uint64_t k) {
                size_t removed = 0;
                for (auto& r : lun.regs)
                    if (r.key == k && r.nexus != me) {
                        lun.ua[r.nexus] |= ua_registrations_preempted;
                        ++removed;
                    }
                std::erase_if(lun.regs,
                              [&](const PrRegistration& r) { return r.key == k && r.nexus != me; });
                return removed;
            };
            if (lun.reserved && (scope != 0 || !valid_type(type)))
                return invalid_cdb_field(t, 2, scope != 0 ? 7 : 3), complete(t);
            if (!lun.reserved) {
                if (sa_key == 0) return invalid_param_field(t, 8), complete(t);
                if (preempt_key(sa_key) == 0) return conflict(t);
            } else if (all_registrants(lun.res_type)) {
                if (sa_key == 0) {
                    for (auto& r : lun.regs)
                        if (r.nexus != me) lun.ua[r.nexus] |= ua_registrations_preempted;
                    std::erase_if(lun.regs, [&](const PrRegistration& r) { return r.nexus != me; });
                    lun.res_type = type;
                    lun.holder = me;
                    lun.res_key = key;
                } else if (preempt_key(sa_key) == 0) {
                    return conflict(t);
                }
            } else if (sa_key == lun.res_key) {
                preempt_key(sa_key);
                lun.res_type = type;
                lun.holder = me;
                lun.res_key = key;
            } else {
                if (sa_key == 0) return invalid_param_field(t, 8), complete(t);
                if (preempt_key(sa_key) == 0) return conflict(t);
            }
            ++lun.pr_generation;
            return complete(t);
        }
        default: return invalid_cdb_field(t, 1, 4), complete(t);
    }
}

// ---- SPC-2 RESERVE / RELEASE -------------------------------------------------------------------

// While any persistent reservation registration exists both conflict (SPC-2 7.21, CRH 0).
void execute_reserve(Task& t) noexcept {
    Lun& lun = *t.priv.lun;
    const bool ten = t.cdb[0] == 0x56;
    // RESERVE(6): extents and third-party IDs are obsolete; RESERVE(10): 3RDPTY, LONGID.
    if (ten ? (t.cdb[1] & 0x12) != 0 : (t.cdb[1] & 0x1F) != 0)
        return invalid_cdb_field(t, 1, ten ? 4 : 0), complete(t);
    if (!lun.regs.empty()) return conflict(t);
    // Another holder was refused before execute(); the holder reserving again is GOOD.
    lun.spc2_reserved = true;
    lun.spc2_holder = t.priv.nexus;
    complete(t);
}

void execute_release(Task& t) noexcept {
    Lun& lun = *t.priv.lun;
    const bool ten = t.cdb[0] == 0x57;
    if (ten ? (t.cdb[1] & 0x12) != 0 : (t.cdb[1] & 0x1F) != 0)
        return invalid_cdb_field(t, 1, ten ? 4 : 0), complete(t);
    if (!lun.regs.empty()) return conflict(t);
    if (lun.spc2_reserved && lun.spc2_holder == t.priv.nexus) lun.spc2_reserved = false;
    complete(t);
}

}  // namespace strata::scsi
