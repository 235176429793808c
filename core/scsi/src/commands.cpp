// SPC-4 / SBC-3 command execution: INQUIRY and VPD pages, capacity, READ/WRITE/VERIFY/WRITE AND
// VERIFY/WRITE SAME/UNMAP/COMPARE AND WRITE/ORWRITE over the bdev, PRE-FETCH, READ DEFECT DATA,
// MODE SENSE/SELECT, REPORT LUNS, REQUEST SENSE, SYNCHRONIZE CACHE, START STOP UNIT, REPORT
// SUPPORTED OPERATION CODES, GET LBA STATUS. Reservations are pr.cpp's.
#include <algorithm>

#include "internal.h"

namespace strata::scsi {

namespace {

constexpr uint32_t kMaxTransferBytes = 32u << 20;
constexpr uint32_t kMaxWriteSameBlocks = 65536;
constexpr uint32_t kMaxUnmapDescriptors = 256;
constexpr uint8_t kMaxCompareWriteBlocks = 255;
constexpr char kVendor[] = "STRATA  ";

// ---- the command table (REPORT SUPPORTED OPERATION CODES) ----
struct CommandInfo {
    uint8_t opcode;
    uint16_t sa;
    bool has_sa;
    uint8_t len;
    uint8_t usage[16];
};

const CommandInfo kCommands[] = {
    {0x00, 0, false, 6, {0x00, 0, 0, 0, 0, 0}},
    {0x03, 0, false, 6, {0x03, 0x01, 0, 0, 0xff, 0}},
    {0x08, 0, false, 6, {0x08, 0x1f, 0xff, 0xff, 0xff, 0}},
    {0x0A, 0, false, 6, {0x0a, 0x1f, 0xff, 0xff, 0xff, 0}},
    {0x12, 0, false, 6, {0x12, 0x01, 0xff, 0xff, 0xff, 0}},
    {0x15, 0, false, 6, {0x15, 0x11, 0, 0, 0xff, 0}},
    {0x16, 0, false, 6, {0x16, 0, 0, 0, 0, 0}},
    {0x17, 0, false, 6, {0x17, 0, 0, 0, 0, 0}},
    {0x1A, 0, false, 6, {0x1a, 0x08, 0xff, 0xff, 0xff, 0}},
    {0x1B, 0, false, 6, {0x1b, 0x01, 0, 0x0f, 0xf7, 0}},
    {0x25, 0, false, 10, {0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0}},
    {0x28, 0, false, 10, {0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}},
    {0x2A, 0, false, 10, {0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}},
    {0x2E, 0, false, 10, {0x2e, 0x16, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}},
    {0x2F, 0, false, 10, {0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}},
    {0x34, 0, false, 10, {0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0}},
    {0x35, 0, false, 10, {0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}},
    {0x37, 0, false, 10, {0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0}},
    {0x41, 0, false, 10, {0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0}},
    {0x42, 0, false, 10, {0x42, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
    {0x55, 0, false, 10, {0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
    {0x56, 0, false, 10, {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {0x57, 0, false, 10, {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {0x5A, 0, false, 10, {0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0}},
    {0x5E, 0, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
    {0x5E, 1, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
    {0x5E, 2, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
    {0x5F, 0, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x5F, 1, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x5F, 2, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x5F, 3, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x5F, 4, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x5F, 5, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x5F, 6, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}},
    {0x88, 0, false, 16, {0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x89, 0, false, 16, {0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0}},
    {0x8A, 0, false, 16, {0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x8B, 0, false, 16, {0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x8E, 0, false, 16, {0x8e, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x8F, 0, false, 16, {0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x90, 0, false, 16, {0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}},
    {0x91, 0, false, 16, {0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x93, 0, false, 16, {0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x9E, 0x10, true, 16, {0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0x9E, 0x12, true, 16, {0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xA0, 0, false, 12, {0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xA3, 0x0C, true, 12, {0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xA8, 0, false, 12, {0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xAA, 0, false, 12, {0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xAE, 0, false, 12, {0xae, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xAF, 0, false, 12, {0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}},
    {0xB7, 0, false, 12, {0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}},
};

void good(Task& t) noexcept { complete(t); }

// ---- bdev I/O plumbing ----------------------------------------------------------------------

void fail_io(Task& t, Errc code) noexcept {
    switch (code) {
        case Errc::corrupt: set_sense(t, SenseKey::miscompare, asc::miscompare_during_verify); break;
        case Errc::shutdown:
        case Errc::device_removed:
            set_sense(t, SenseKey::illegal_request, asc::lun_not_supported);
            break;
        case Errc::io_error:
        case Errc::dma_fault:
        case Errc::timeout:
        case Errc::aborted:
            set_sense(t, SenseKey::medium_error,
                      t.priv.op == op_read || t.priv.op == op_verify ? asc::unrecovered_read_error
                                                                     : asc::write_error);
            break;
        default: set_sense(t, SenseKey::hardware_error, asc::internal_target_failure); break;
    }
    complete(t);
}

void run_issue(Task& t) noexcept;

void retry_issue(void* ctx) { run_issue(*static_cast<Task*>(ctx)); }

void run_issue(Task& t) noexcept {
    if (t.priv.abort_requested) return complete(t);
    Status s = t.priv.issue(t);
    if (s.ok()) return;
    if (s.code() == Errc::busy) {
        t.priv.wait.fn = &retry_issue;
        t.priv.wait.ctx = &t;
        bdev::queue_io_wait(*t.priv.lun->ch, t.priv.wait);
        return;
    }
    fail_io(t, s.code());
}

void io_done(void* ctx, const bdev::IoStatus& st) {
    Task& t = *static_cast<Task*>(ctx);
    if (t.priv.abort_requested) return complete(t);
    if (!st.ok()) return fail_io(t, st.code);
    t.priv.next(t);
}

// Submits issue(t); next(t) runs after it succeeded.
void start(Task& t, Status (*issue)(Task&) noexcept, void (*next)(Task&) noexcept) noexcept {
    t.priv.issue = issue;
    t.priv.next = next;
    run_issue(t);
}

Lun& L(Task& t) { return *t.priv.lun; }

Status issue_flush(Task& t) noexcept {
    return bdev::flush(*L(t).desc, *L(t).ch, t.priv.lba, t.priv.num_blocks, &io_done, &t);
}

// After a write: FUA or a disabled write cache flush what was written.
void after_write(Task& t) noexcept {
    if ((t.priv.fua || !L(t).mode.wce) && L(t).flush_supported && t.priv.stage == 0) {
        t.priv.stage = 1;
        return start(t, &issue_flush, &after_write);
    }
    good(t);
}

bool range_ok(Task& t, uint64_t lba, uint64_t nb) noexcept {
    const uint64_t n = L(t).num_blocks;
    if (lba >= n || nb > n - lba) {
        set_sense(t, SenseKey::illegal_request, asc::lba_out_of_range);
        complete(t);
        return false;
    }
    return true;
}

// Scatter list of the data-out (or data-in) bytes [off, off + len) into iov_a / iov_b.
bool slice(Task& t, size_t off, size_t len, bool b) noexcept {
    int n = slice_iovs(t, off, len, b ? t.priv.iov_b : t.priv.iov_a, int(kTaskScratchIovs));
    if (n < 0) return false;
    (b ? t.priv.cnt_b : t.priv.cnt_a) = n;
    return true;
}

// ---- READ / WRITE -----------------------------------------------------------------------------

Status issue_read(Task& t) noexcept {
    return bdev::readv(*L(t).desc, *L(t).ch, t.priv.data_iovs, t.priv.data_cnt, t.priv.lba,
                       t.priv.num_blocks, &io_done, &t);
}
Status issue_write(Task& t) noexcept {
    return bdev::writev(*L(t).desc, *L(t).ch, t.priv.data_iovs, t.priv.data_cnt, t.priv.lba,
                        t.priv.num_blocks, &io_done, &t);
}

// The data buffer for `bytes`: the exact slice when it fits the scratch iovecs, else the
// Task's own iovecs (longer than needed, which the bdev layer accepts).
void data_buffer(Task& t, size_t bytes) noexcept {
    if (slice(t, 0, bytes, false)) {
        t.priv.data_iovs = t.priv.iov_a;
        t.priv.data_cnt = t.priv.cnt_a;
    } else {
        t.priv.data_iovs = t.iovs;
        t.priv.data_cnt = t.iovcnt;
    }
}

// `after` runs once a write's data is on the bdev (WRITE AND VERIFY compares there first).
void read_write(Task& t, uint64_t lba, uint64_t nb, uint8_t flags, int len_byte, bool write,
                bool has_flags, void (*after)(Task&) noexcept = &after_write) noexcept {
    if (has_flags && (flags >> 5) != 0) return invalid_cdb_field(t, 1, 7), complete(t);
    if (!range_ok(t, lba, nb)) return;
    if (nb == 0) return good(t);
    const uint32_t bs = L(t).block_size;
    if (nb * bs > kMaxTransferBytes) return invalid_cdb_field(t, uint16_t(len_byte)), complete(t);
    const uint64_t bytes = nb * bs;
    const bool dir_ok = t.dir == (write ? DataDir::to_dev : DataDir::from_dev);
    const uint64_t avail = dir_ok ? std::min<uint64_t>(t.transfer_length, t.priv.iov_bytes) : 0;
    if (bytes > t.transfer_length) {
        t.residual = static_cast<uint32_t>(std::min<uint64_t>(bytes - t.transfer_length, UINT32_MAX));
        t.residual_overflow = true;
    } else if (bytes < t.transfer_length) {
        t.residual = static_cast<uint32_t>(t.transfer_length - bytes);
    }
    t.priv.fua = has_flags && (flags & 0x08) != 0;
    t.priv.lba = lba;
    if (write) {
        // Less data-out than the CDB asks for (iSCSI EDTL < SPDTL): as FCP-4 says, the command
        // runs on the data there is (whole blocks of it, an overflow residual for the rest);
        // data ending inside a block cannot be written: INVALID FIELD IN INFORMATION UNIT.
        uint64_t n = nb;
        if (bytes > avail) {
            if (avail % bs != 0)
                return set_sense(t, SenseKey::illegal_request,
                                 asc::invalid_field_in_information_unit),
                       complete(t);
            n = avail / bs;
            if (n == 0) return good(t);
        }
        t.priv.op = op_write;
        t.priv.num_blocks = n;
        data_buffer(t, n * bs);
        t.data_transferred = static_cast<uint32_t>(n * bs);
        return start(t, &issue_write, after);
    }
    // A data-in buffer shorter than the CDB's transfer gets its first `avail` bytes (SAM: the
    // overflow residual says the rest). When `avail` ends inside a block that block is read
    // whole, if the buffer has room for it, and only its head is transferred.
    uint64_t n = std::min<uint64_t>(nb, avail / bs);
    if (n < nb && avail % bs != 0 && (n + 1) * bs <= t.priv.iov_bytes) ++n;
    if (n == 0) return good(t);
    t.priv.op = op_read;
    t.priv.num_blocks = n;
    data_buffer(t, n * bs);
    t.data_transferred = static_cast<uint32_t>(std::min<uint64_t>(n * bs, avail));
    start(t, &issue_read, &good);
}

// ---- VERIFY -----------------------------------------------------------------------------------

Status issue_compare(Task& t) noexcept {
    return bdev::comparev(*L(t).desc, *L(t).ch, t.priv.data_iovs, t.priv.data_cnt, t.priv.lba,
                          t.priv.num_blocks, &io_done, &t);
}

void verify(Task& t, uint64_t lba, uint64_t nb, int len_byte) noexcept {
    const uint8_t f = t.cdb[1];
    if ((f >> 5) != 0) return invalid_cdb_field(t, 1, 7), complete(t);
    const uint8_t bytchk = (f >> 1) & 3;
    if (bytchk == 2 || bytchk == 3) return invalid_cdb_field(t, 1, 2), complete(t);
    if (!range_ok(t, lba, nb)) return;
    if (nb == 0 || bytchk == 0) return good(t);
    const uint64_t bytes = nb * L(t).block_size;
    if (bytes > kMaxTransferBytes) return invalid_cdb_field(t, uint16_t(len_byte)), complete(t);
    const uint64_t avail =
        t.dir == DataDir::to_dev ? std::min<uint64_t>(t.transfer_length, t.priv.iov_bytes) : 0;
    if (bytes > avail) return invalid_cdb_field(t, uint16_t(len_byte)), complete(t);
    data_buffer(t, bytes);
    if (bytes < t.transfer_length) t.residual = uint32_t(t.transfer_length - bytes);
    t.priv.op = op_verify;
    t.priv.lba = lba;
    t.priv.num_blocks = nb;
    t.data_transferred = uint32_t(bytes);
    start(t, &issue_compare, &good);
}

// ---- WRITE AND VERIFY -------------------------------------------------------------------------

// The write is done: BYTCHK 01b compares the medium with the same data-out, then the written
// range is flushed (the verify is of the medium, so the data must be there: as FUA).
void wv_written(Task& t) noexcept {
    t.priv.stage = 0;
    t.priv.fua = true;
    if (((t.cdb[1] >> 1) & 3) == 0) return after_write(t);
    t.priv.op = op_verify;
    start(t, &issue_compare, &after_write);
}

void write_verify(Task& t, uint64_t lba, uint64_t nb, int len_byte) noexcept {
    const uint8_t f = t.cdb[1];
    const uint8_t bytchk = (f >> 1) & 3;
    if (bytchk >= 2) return invalid_cdb_field(t, 1, 2), complete(t);  // reserved, SBC-4
    // WRPROTECT (bits 7..5, checked by read_write) and DPO; bit 3 is reserved (no FUA).
    read_write(t, lba, nb, f & 0xF0, len_byte, true, true, &wv_written);
}

// ---- PRE-FETCH: nothing is cached, so GOOD (SBC-3 5.9: CONDITION MET only when the whole
// range would fit a cache). IMMED changes nothing. ----

void prefetch(Task& t, uint64_t lba, uint64_t nb) noexcept {
    if (!range_ok(t, lba, nb)) return;
    good(t);
}

// ---- READ DEFECT DATA: no defect list, in the requested format (an empty list). ----

void read_defect_data(Task& t, bool twelve) noexcept {
    const uint8_t* c = t.cdb;
    uint8_t d[8] = {};
    d[1] = twelve ? uint8_t(c[1] & 0x1F) : uint8_t(c[2] & 0x1F);  // REQ_PLIST, REQ_GLIST, format
    const size_t n = twelve ? 8 : 4;  // defect list length (and generation) 0
    const uint32_t alloc = twelve ? be32(c + 6) : be16(c + 7);
    data_in(t, d, std::min<size_t>(n, alloc));
    good(t);
}

// ---- SYNCHRONIZE CACHE ----

void sync_cache(Task& t, uint64_t lba, uint64_t nb) noexcept {
    const uint64_t n = L(t).num_blocks;
    if (lba >= n || (nb != 0 && nb > n - lba)) {
        set_sense(t, SenseKey::illegal_request, asc::lba_out_of_range);
        return complete(t);
    }
    if (!L(t).flush_supported) return good(t);
    t.priv.op = op_flush;
    t.priv.lba = lba;
    t.priv.num_blocks = nb == 0 ? n - lba : nb;
    t.priv.stage = 1;
    start(t, &issue_flush, &good);
}

// ---- WRITE SAME -------------------------------------------------------------------------------

Status issue_write_zeroes(Task& t) noexcept {
    return bdev::write_zeroes(*L(t).desc, *L(t).ch, t.priv.lba, t.priv.num_blocks, &io_done, &t);
}

Status issue_ws_chunk(Task& t) noexcept {
    const uint32_t pieces = t.priv.index;
    const uint64_t per = kTaskScratchIovs / pieces;
    const uint64_t c = std::min<uint64_t>(per, t.priv.num_blocks - t.priv.done_blocks);
    int n = 0;
    for (uint64_t b = 0; b < c; ++b)
        for (uint32_t p = 0; p < pieces; ++p) t.priv.iov_a[n++] = t.priv.iov_b[p];
    t.priv.cnt_a = n;
    return bdev::writev(*L(t).desc, *L(t).ch, t.priv.iov_a, n, t.priv.lba + t.priv.done_blocks, c,
                        &io_done, &t);
}

void ws_next(Task& t) noexcept {
    const uint64_t per = kTaskScratchIovs / t.priv.index;
    t.priv.done_blocks += std::min<uint64_t>(per, t.priv.num_blocks - t.priv.done_blocks);
    if (t.priv.done_blocks < t.priv.num_blocks) return run_issue(t);
    // the whole range: flush it when the cache is off
    t.priv.num_blocks = t.priv.done_blocks;
    after_write(t);
}

void write_same(Task& t, uint64_t lba, uint64_t nb, bool sixteen) noexcept {
    const uint8_t f = t.cdb[1];
    if ((f >> 5) != 0) return invalid_cdb_field(t, 1, 7), complete(t);
    if (f & 0x10) return invalid_cdb_field(t, 1, 4), complete(t);  // ANCHOR: ANC_SUP is 0
    if (f & 0x06) return invalid_cdb_field(t, 1, 2), complete(t);  // LBDATA/PBDATA (obsolete)
    const bool ndob = sixteen && (f & 0x01);
    if (!sixteen && (f & 0x01)) return invalid_cdb_field(t, 1, 0), complete(t);
    const uint16_t len_byte = sixteen ? 10 : 7;
    if (nb == 0 || nb > kMaxWriteSameBlocks) return invalid_cdb_field(t, len_byte), complete(t);
    if (!range_ok(t, lba, nb)) return;
    t.priv.op = op_write_same;
    t.priv.lba = lba;
    t.priv.num_blocks = nb;
    const uint32_t bs = L(t).block_size;
    if (ndob) return start(t, &issue_write_zeroes, &after_write);
    const uint64_t avail =
        t.dir == DataDir::to_dev ? std::min<uint64_t>(t.transfer_length, t.priv.iov_bytes) : 0;
    if (avail < bs) return invalid_cdb_field(t, len_byte), complete(t);
    t.data_transferred = bs;
    if (t.transfer_length > bs) t.residual = t.transfer_length - bs;
    int pieces = slice_iovs(t, 0, bs, t.priv.iov_b, int(kTaskScratchIovs));
    if (pieces <= 0)
        return set_sense(t, SenseKey::hardware_error, asc::internal_target_failure), complete(t);
    bool zero = true;
    for (int i = 0; i < pieces && zero; ++i) {
        const auto* p = static_cast<const uint8_t*>(t.priv.iov_b[i].iov_base);
        zero = std::all_of(p, p + t.priv.iov_b[i].iov_len, [](uint8_t b) { return b == 0; });
    }
    if (zero) return start(t, &issue_write_zeroes, &after_write);
    t.priv.index = static_cast<uint32_t>(pieces);
    t.priv.done_blocks = 0;
    start(t, &issue_ws_chunk, &ws_next);
}

// ---- UNMAP ------------------------------------------------------------------------------------

Status issue_unmap(Task& t) noexcept {
    uint8_t d[16];
    data_out(t, d, 16, 8 + 16 * size_t(t.priv.index));
    return bdev::unmap(*L(t).desc, *L(t).ch, be64(d), be32(d + 8), &io_done, &t);
}

void unmap_next(Task& t) noexcept {
    // Skip descriptors with no blocks.
    while (++t.priv.index < t.priv.num_blocks) {
        uint8_t d[16];
        data_out(t, d, 16, 8 + 16 * size_t(t.priv.index));
        if (be32(d + 8) != 0) return run_issue(t);
    }
    good(t);
}

void unmap_cmd(Task& t) noexcept {
    if (!L(t).unmap_supported) {
        set_sense(t, SenseKey::illegal_request, asc::invalid_command_opcode);
        return complete(t);
    }
    if (t.cdb[1] & 0x01) return invalid_cdb_field(t, 1, 0), complete(t);  // ANCHOR
    const uint16_t plen = be16(t.cdb + 7);
    if (plen == 0) return good(t);
    uint8_t h[8] = {};
    const size_t got = data_out(t, h, 8);
    if (plen < 8 || got < 8) {
        set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
        return complete(t);
    }
    const uint16_t bdl = be16(h + 2);
    const size_t avail = std::min<size_t>({plen, size_t(t.transfer_length), size_t(t.priv.iov_bytes)});
    if (bdl % 16 != 0 || size_t(bdl) + 8 > avail) {
        set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
        return complete(t);
    }
    const uint32_t count = bdl / 16;
    if (count > kMaxUnmapDescriptors) return invalid_param_field(t, 2), complete(t);
    t.data_transferred = uint32_t(avail);
    for (uint32_t i = 0; i < count; ++i) {
        uint8_t d[16];
        data_out(t, d, 16, 8 + 16 * size_t(i));
        const uint64_t lba = be64(d), nb = be32(d + 8);
        if (lba > L(t).num_blocks || nb > L(t).num_blocks - lba) {
            set_sense(t, SenseKey::illegal_request, asc::lba_out_of_range);
            return complete(t);
        }
    }
    t.priv.op = op_unmap;
    t.priv.num_blocks = count;  // descriptor count
    t.priv.index = UINT32_MAX;  // unmap_next() starts at 0
    t.priv.issue = &issue_unmap;
    t.priv.next = &unmap_next;
    unmap_next(t);
}

// ---- COMPARE AND WRITE ------------------------------------------------------------------------

Status issue_cw_read(Task& t) noexcept {
    return bdev::read(*L(t).desc, *L(t).ch, L(t).scratch.data(), t.priv.lba, t.priv.num_blocks,
                      &io_done, &t);
}
Status issue_cw_write(Task& t) noexcept {
    return bdev::writev(*L(t).desc, *L(t).ch, t.priv.iov_b, t.priv.cnt_b, t.priv.lba,
                        t.priv.num_blocks, &io_done, &t);
}

void cw_compare(Task& t) noexcept {
    const size_t bytes = size_t(t.priv.num_blocks) * L(t).block_size;
    const uint8_t* medium = L(t).scratch.data();
    size_t off = 0;
    for (int i = 0; i < t.priv.cnt_a; ++i) {
        const auto* p = static_cast<const uint8_t*>(t.priv.iov_a[i].iov_base);
        for (size_t k = 0; k < t.priv.iov_a[i].iov_len && off < bytes; ++k, ++off) {
            if (p[k] != medium[off]) {
                set_sense_info(t, SenseKey::miscompare, asc::miscompare_during_verify, off);
                return complete(t);
            }
        }
    }
    t.priv.stage = 0;
    start(t, &issue_cw_write, &after_write);
}

// ORWRITE: the medium (in the scratch) OR the data-out, written back from the scratch.
Status issue_or_write(Task& t) noexcept {
    return bdev::write(*L(t).desc, *L(t).ch, L(t).scratch.data(), t.priv.lba, t.priv.num_blocks,
                       &io_done, &t);
}

void or_merge(Task& t) noexcept {
    uint8_t* medium = L(t).scratch.data();
    const size_t bytes = size_t(t.priv.num_blocks) * L(t).block_size;
    uint8_t chunk[4096];
    for (size_t off = 0; off < bytes; off += sizeof(chunk)) {
        const size_t n = data_out(t, chunk, std::min(sizeof(chunk), bytes - off), off);
        for (size_t k = 0; k < n; ++k) medium[off + k] |= chunk[k];
    }
    t.priv.stage = 0;
    start(t, &issue_or_write, &after_write);
}

void cw_range_locked(void* ctx, Status st) {
    Task& t = *static_cast<Task*>(ctx);
    if (!st.ok()) return fail_io(t, st.code());
    L(t).cw_range_locked = true;
    if (t.priv.abort_requested) return complete(t);
    start(t, &issue_cw_read, t.cdb[0] == 0x8B ? &or_merge : &cw_compare);
}

// COMPARE AND WRITE and ORWRITE run one at a time per LUN, and each is atomic against every
// write to its blocks (SBC-3 5.3: no other command may change them between the read and the
// write): an LBA range lock, whose owner is the task (the ctx its own write carries), parks
// other writes to the blocks until deliver() lets it go.
void cw_run(Task& t) noexcept {
    t.priv.op = op_cw;
    L(t).cw_busy = true;
    const Status s = bdev::lock_lba_range(*L(t).desc, *L(t).ch, t.priv.lba, t.priv.num_blocks,
                                          &cw_range_locked, &t);
    if (!s.ok()) fail_io(t, s.code());
}

void cw_enqueue(Task& t) noexcept {
    if (L(t).cw_busy) {
        t.priv.op = op_cw_queued;
        L(t).cw_queue.push_back(t);
        return;
    }
    cw_run(t);
}

void compare_and_write(Task& t) noexcept {
    const uint8_t f = t.cdb[1];
    if ((f >> 5) != 0) return invalid_cdb_field(t, 1, 7), complete(t);
    const uint64_t lba = be64(t.cdb + 2);
    const uint64_t nb = t.cdb[13];
    if (nb > kMaxCompareWriteBlocks) return invalid_cdb_field(t, 13), complete(t);
    if (!range_ok(t, lba, nb)) return;
    // Zero blocks with a data-out buffer: the CDB and the transfer disagree (an initiator that
    // put 256 in the one-byte field sends 0 with 512 blocks of data).
    if (nb == 0 && t.dir == DataDir::to_dev && t.transfer_length > 0)
        return invalid_cdb_field(t, 13), complete(t);
    if (nb == 0) return good(t);
    const uint64_t bytes = nb * L(t).block_size;
    const uint64_t avail =
        t.dir == DataDir::to_dev ? std::min<uint64_t>(t.transfer_length, t.priv.iov_bytes) : 0;
    if (2 * bytes > avail) return invalid_cdb_field(t, 13), complete(t);
    if (!slice(t, 0, bytes, false) || !slice(t, bytes, bytes, true))
        return set_sense(t, SenseKey::hardware_error, asc::internal_target_failure), complete(t);
    if (2 * bytes < t.transfer_length) t.residual = uint32_t(t.transfer_length - 2 * bytes);
    t.data_transferred = uint32_t(2 * bytes);
    t.priv.lba = lba;
    t.priv.num_blocks = nb;
    t.priv.fua = (f & 0x08) != 0;
    cw_enqueue(t);
}

// ORWRITE (16): up to the scratch's 256 blocks (MAXIMUM COMPARE AND WRITE LENGTH's buffer).
void orwrite(Task& t) noexcept {
    const uint8_t f = t.cdb[1];
    if ((f >> 5) != 0) return invalid_cdb_field(t, 1, 7), complete(t);  // ORPROTECT
    const uint64_t lba = be64(t.cdb + 2);
    const uint64_t nb = be32(t.cdb + 10);
    if (!range_ok(t, lba, nb)) return;
    if (nb == 0) return good(t);
    if (nb * L(t).block_size > L(t).scratch.size()) return invalid_cdb_field(t, 10), complete(t);
    const uint64_t bytes = nb * L(t).block_size;
    const uint64_t avail =
        t.dir == DataDir::to_dev ? std::min<uint64_t>(t.transfer_length, t.priv.iov_bytes) : 0;
    if (bytes > avail) {
        set_sense(t, SenseKey::illegal_request, asc::invalid_field_in_information_unit);
        return complete(t);
    }
    if (bytes < t.transfer_length) t.residual = uint32_t(t.transfer_length - bytes);
    t.data_transferred = uint32_t(bytes);
    t.priv.lba = lba;
    t.priv.num_blocks = nb;
    t.priv.fua = (f & 0x08) != 0;
    cw_enqueue(t);
}

// ---- INQUIRY ----------------------------------------------------------------------------------

size_t standard_inquiry(const Lun* lun, uint8_t* d) {
    std::memset(d, 0, 96);
    d[0] = lun != nullptr ? 0x00 : 0x7F;  // direct access block device / no LU
    d[2] = 0x06;                           // SPC-4
    d[3] = 0x12;                           // HISUP, response data format 2
    d[4] = 96 - 5;
    d[7] = 0x02;  // CMDQUE
    std::memcpy(d + 8, kVendor, 8);
    char product[17] = "Strata bdev     ";
    if (lun != nullptr && !lun->product.empty())
        for (size_t i = 0; i < 16; ++i) product[i] = i < lun->product.size() ? lun->product[i] : ' ';
    std::memcpy(d + 16, product, 16);
    std::memcpy(d + 32, "0001", 4);
    const uint16_t versions[] = {0x00A0 /* SAM-5 */, 0x0460 /* SPC-4 */, 0x04C0 /* SBC-3 */};
    for (size_t i = 0; i < 3; ++i) put_be16(d + 58 + 2 * i, versions[i]);
    return 96;
}

uint8_t hexval(char c) {
    if (c >= '0' && c <= '9') return uint8_t(c - '0');
    if (c >= 'a' && c <= 'f') return uint8_t(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return uint8_t(c - 'A' + 10);
    return 0;
}

void uuid_bytes(const std::string& uuid, uint8_t out[16]) {
    std::memset(out, 0, 16);
    size_t n = 0;
    for (size_t i = 0; i + 1 < uuid.size() && n < 16;) {
        if (uuid[i] == '-') {
            ++i;
            continue;
        }
        out[n++] = uint8_t(hexval(uuid[i]) << 4 | hexval(uuid[i + 1]));
        i += 2;
    }
}

void inquiry(Task& t) noexcept {
    const uint8_t* c = t.cdb;
    const uint16_t alloc = be16(c + 3);
    if (c[1] & 0x02) return invalid_cdb_field(t, 1, 1), complete(t);  // CMDDT
    const bool evpd = c[1] & 0x01;
    uint8_t d[256] = {};
    size_t n = 0;
    Lun& lun = L(t);
    if (!evpd) {
        if (c[2] != 0) return invalid_cdb_field(t, 2), complete(t);
        n = standard_inquiry(&lun, d);
    } else {
        d[1] = c[2];
        switch (c[2]) {
            case 0x00: {
                const uint8_t pages[] = {0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2};
                std::memcpy(d + 4, pages, sizeof(pages));
                n = 4 + sizeof(pages);
                break;
            }
            case 0x80: {
                size_t k = 0;
                for (char ch : lun.uuid)
                    if (ch != '-' && k < 32) d[4 + k++] = uint8_t(ch);
                n = 4 + k;
                break;
            }
            case 0x83: {
                uint8_t u[16];
                uuid_bytes(lun.uuid, u);
                size_t p = 4;
                // NAA locally assigned (type 3): 0x3 then 60 bits of the bdev's UUID.
                d[p] = 0x01;  // code set: binary
                d[p + 1] = 0x03;
                d[p + 3] = 8;
                uint64_t v = 0;
                for (int i = 0; i < 8; ++i) v = v << 8 | uint8_t(u[i] ^ u[i + 8]);
                put_be64(d + p + 4, (v & 0x0FFFFFFFFFFFFFFFull) | 0x3000000000000000ull);
                p += 12;
                // T10 vendor ID (type 1): vendor + the UUID text.
                d[p] = 0x02;  // ASCII
                d[p + 1] = 0x01;
                std::memcpy(d + p + 4, kVendor, 8);
                const size_t ul = std::min<size_t>(lun.uuid.size(), 36);
                std::memcpy(d + p + 12, lun.uuid.data(), ul);
                d[p + 3] = uint8_t(8 + ul);
                p += 4 + 8 + ul;
                // Relative target port (type 4, target port association): port 1.
                d[p] = 0x01;
                d[p + 1] = 0x14;
                d[p + 3] = 4;
                put_be16(d + p + 6, 1);
                p += 8;
                n = p;
                break;
            }
            case 0xB0: {
                const uint32_t bs = lun.block_size;
                n = 64;
                d[4] = 0x01;  // WSNZ
                d[5] = kMaxCompareWriteBlocks;
                put_be16(d + 6, 1);
                put_be32(d + 8, kMaxTransferBytes / bs);
                put_be32(d + 12, std::max<uint32_t>(1, (128u << 10) / bs));
                if (lun.unmap_supported) {
                    put_be32(d + 20, 0xFFFFFFFFu);
                    put_be32(d + 24, kMaxUnmapDescriptors);
                    put_be32(d + 28, 1);
                }
                put_be64(d + 36, kMaxWriteSameBlocks);
                break;
            }
            case 0xB1:
                n = 64;
                put_be16(d + 4, 1);  // non-rotating medium
                break;
            case 0xB2:
                n = 8;
                if (lun.unmap_supported) {
                    d[5] = 0x80 | 0x40 | 0x20;  // LBPU, LBPWS, LBPWS10
                    d[6] = 0x02;                // thin provisioned
                }
                break;
            default: return invalid_cdb_field(t, 2), complete(t);
        }
        put_be16(d + 2, uint16_t(n - 4));
    }
    data_in(t, d, std::min<size_t>(n, alloc));
    good(t);
}

// ---- capacity, LBA status ---------------------------------------------------------------------

void read_capacity10(Task& t) noexcept {
    const uint8_t* c = t.cdb;
    if (!(c[8] & 0x01) && be32(c + 2) != 0) return invalid_cdb_field(t, 2), complete(t);
    uint8_t d[8];
    const uint64_t last = L(t).num_blocks - 1;
    put_be32(d, last > 0xFFFFFFFFull ? 0xFFFFFFFFu : uint32_t(last));
    put_be32(d + 4, L(t).block_size);
    data_in(t, d, 8);
    good(t);
}

void service_action_in(Task& t) noexcept {
    const uint8_t* c = t.cdb;
    const uint8_t sa = c[1] & 0x1F;
    const uint32_t alloc = be32(c + 10);
    if (sa == 0x10) {  // READ CAPACITY (16)
        uint8_t d[32] = {};
        put_be64(d, L(t).num_blocks - 1);
        put_be32(d + 8, L(t).block_size);
        if (L(t).unmap_supported) d[14] = 0x80;  // LBPME
        data_in(t, d, std::min<uint32_t>(32, alloc));
        return good(t);
    }
    if (sa == 0x12) {  // GET LBA STATUS
        const uint64_t lba = be64(c + 2);
        if (lba >= L(t).num_blocks) {
            set_sense(t, SenseKey::illegal_request, asc::lba_out_of_range);
            return complete(t);
        }
        uint8_t d[24] = {};
        put_be32(d, 20);
        put_be64(d + 8, lba);
        const uint64_t rest = L(t).num_blocks - lba;
        put_be32(d + 16, rest > 0xFFFFFFFFull ? 0xFFFFFFFFu : uint32_t(rest));
        d[20] = 0;  // mapped (the bdev layer has no allocation query)
        data_in(t, d, std::min<uint32_t>(24, alloc));
        return good(t);
    }
    invalid_cdb_field(t, 1, 4);
    complete(t);
}

// ---- MODE SENSE / MODE SELECT -----------------------------------------------------------------

enum class PageControl { current = 0, changeable = 1, default_ = 2, saved = 3 };

size_t mode_page(const Lun& lun, uint8_t page, PageControl pc, uint8_t* d) {
    ModeState m = lun.mode;
    if (pc == PageControl::default_) m = ModeState{};
    if (pc == PageControl::default_) m.wce = lun.desc ? lun.desc->bdev().properties().write_cache : false;
    const bool ch = pc == PageControl::changeable;
    switch (page) {
        case 0x08:
            std::memset(d, 0, 20);
            d[0] = 0x08;
            d[1] = 0x12;
            d[2] = ch ? 0x04 : uint8_t((m.wce ? 0x04 : 0) | (m.rcd ? 0x01 : 0));
            return 20;
        case 0x0A:
            std::memset(d, 0, 12);
            d[0] = 0x0A;
            d[1] = 0x0A;
            d[2] = ch ? 0x04 : uint8_t(m.d_sense ? 0x04 : 0);
            if (!ch) {
                d[3] = 0x10;  // unrestricted reordering
                put_be16(d + 8, 0xFFFF);
            }
            return 12;
        case 0x1C:
            std::memset(d, 0, 12);
            d[0] = 0x1C;
            d[1] = 0x0A;
            d[2] = ch ? 0x08 : uint8_t(m.dexcpt ? 0x08 : 0);
            return 12;
        default: return 0;
    }
}

void mode_sense(Task& t, bool ten) noexcept {
    const uint8_t* c = t.cdb;
    const bool dbd = c[1] & 0x08;
    const bool llbaa = ten && (c[1] & 0x10);
    const auto pc = static_cast<PageControl>(c[2] >> 6);
    const uint8_t page = c[2] & 0x3F, subpage = c[3];
    const uint32_t alloc = ten ? be16(c + 7) : c[4];
    if (pc == PageControl::saved) {
        set_sense(t, SenseKey::illegal_request, asc::saving_parameters_not_supported);
        return complete(t);
    }
    uint8_t d[128] = {};
    const size_t hdr = ten ? 8 : 4;
    size_t n = hdr;
    if (!dbd) {
        const Lun& l = L(t);
        if (llbaa) {
            put_be64(d + n, l.num_blocks);
            put_be32(d + n + 12, l.block_size);
            n += 16;
            d[4] = 0x01;  // LONGLBA
        } else {
            put_be32(d + n, l.num_blocks > 0xFFFFFFFFull ? 0xFFFFFFFFu : uint32_t(l.num_blocks));
            d[n + 5] = uint8_t(l.block_size >> 16);
            d[n + 6] = uint8_t(l.block_size >> 8);
            d[n + 7] = uint8_t(l.block_size);
            n += 8;
        }
    }
    const size_t bdl = n - hdr;
    if (page == 0x3F) {
        if (subpage != 0 && subpage != 0xFF) return invalid_cdb_field(t, 3), complete(t);
        for (uint8_t p : {0x08, 0x0A, 0x1C}) n += mode_page(L(t), p, pc, d + n);
    } else {
        if (subpage != 0) return invalid_cdb_field(t, 3), complete(t);
        const size_t k = mode_page(L(t), page, pc, d + n);
        if (k == 0) return invalid_cdb_field(t, 2, 5), complete(t);
        n += k;
    }
    if (ten) {
        put_be16(d, uint16_t(n - 2));
        d[3] = 0x10;  // DPOFUA
        put_be16(d + 6, uint16_t(bdl));
    } else {
        d[0] = uint8_t(n - 1);
        d[2] = 0x10;
        d[3] = uint8_t(bdl);
    }
    data_in(t, d, std::min<size_t>(n, alloc));
    good(t);
}

void mode_select(Task& t, bool ten) noexcept {
    const uint8_t* c = t.cdb;
    if (c[1] & 0x01) return invalid_cdb_field(t, 1, 0), complete(t);  // SP: nothing is saved
    const uint32_t plen = ten ? be16(c + 7) : c[4];
    if (plen == 0) return good(t);
    uint8_t p[512] = {};
    const size_t have = data_out(t, p, std::min<size_t>(plen, sizeof(p)));
    const size_t hdr = ten ? 8 : 4;
    if (plen > sizeof(p) || have < plen || plen < hdr) {
        set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
        return complete(t);
    }
    t.data_transferred = plen;
    if ((ten ? be16(p) : p[0]) != 0) return invalid_param_field(t, 0), complete(t);
    const size_t bdl = ten ? be16(p + 6) : p[3];
    const bool longlba = ten && (p[4] & 0x01);
    const size_t want_bdl = longlba ? 16 : 8;
    if (bdl != 0 && bdl != want_bdl) return invalid_param_field(t, ten ? 6 : 3), complete(t);
    if (hdr + bdl > plen) {
        set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
        return complete(t);
    }
    Lun& lun = L(t);
    if (bdl != 0) {
        const uint8_t* b = p + hdr;
        const uint32_t blen = longlba ? be32(b + 12) : be24(b + 5);
        if (blen != lun.block_size) return invalid_param_field(t, uint16_t(hdr + bdl - 1)), complete(t);
    }
    ModeState next = lun.mode;
    size_t off = hdr + bdl;
    while (off < plen) {
        if (off + 2 > plen) {
            set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
            return complete(t);
        }
        const uint8_t code = p[off] & 0x3F;
        if (p[off] & 0x40) return invalid_param_field(t, uint16_t(off), 6), complete(t);  // SPF
        uint8_t cur[20], mask[20];
        const size_t len = mode_page(lun, code, PageControl::current, cur);
        if (len == 0) return invalid_param_field(t, uint16_t(off), 5), complete(t);
        mode_page(lun, code, PageControl::changeable, mask);
        if (p[off + 1] != len - 2) return invalid_param_field(t, uint16_t(off + 1)), complete(t);
        if (off + len > plen) {
            set_sense(t, SenseKey::illegal_request, asc::parameter_list_length_error);
            return complete(t);
        }
        for (size_t i = 2; i < len; ++i) {
            const uint8_t diff = uint8_t((p[off + i] ^ cur[i]) & ~mask[i]);
            if (diff != 0) {
                int bit = 7;
                while (!(diff & (1 << bit))) --bit;
                return invalid_param_field(t, uint16_t(off + i), bit), complete(t);
            }
        }
        const uint8_t b2 = p[off + 2];
        if (code == 0x08) next.wce = b2 & 0x04;
        if (code == 0x0A) next.d_sense = b2 & 0x04;
        if (code == 0x1C) next.dexcpt = b2 & 0x08;
        off += len;
    }
    const bool changed = next.wce != lun.mode.wce || next.d_sense != lun.mode.d_sense ||
                         next.dexcpt != lun.mode.dexcpt;
    lun.mode = next;
    if (changed)
        for (size_t i = 0; i < lun.ua.size(); ++i)
            if (i != t.priv.nexus) lun.ua[i] |= ua_mode_changed;
    good(t);
}

// ---- REPORT SUPPORTED OPERATION CODES ---------------------------------------------------------

void report_opcodes(Task& t) noexcept {
    const uint8_t* c = t.cdb;
    const bool rctd = c[2] & 0x80;
    const uint8_t opts = c[2] & 0x07;
    const uint8_t req_op = c[3];
    const uint16_t req_sa = be16(c + 4);
    const uint32_t alloc = be32(c + 6);
    uint8_t d[64 * 20 + 4] = {};
    size_t n = 0;
    auto timeouts = [&](uint8_t* p) {
        put_be16(p, 0x0A);
        put_be32(p + 4, 30);  // nominal, s
        put_be32(p + 8, 60);  // recommended
    };
    if (opts == 0) {
        n = 4;
        for (const CommandInfo& ci : kCommands) {
            uint8_t* p = d + n;
            p[0] = ci.opcode;
            put_be16(p + 2, ci.sa);
            p[5] = uint8_t((rctd ? 0x02 : 0) | (ci.has_sa ? 0x01 : 0));
            put_be16(p + 6, ci.len);
            n += 8;
            if (rctd) {
                timeouts(d + n);
                n += 12;
            }
        }
        put_be32(d, uint32_t(n - 4));
    } else if (opts <= 3) {
        const CommandInfo* found = nullptr;
        bool exists = false, op_has_sa = false;
        for (const CommandInfo& ci : kCommands) {
            if (ci.opcode != req_op) continue;
            exists = true;
            op_has_sa = ci.has_sa;
            const bool with_sa = opts == 2 || (opts == 3 && ci.has_sa);
            if (!found && (!with_sa || ci.sa == req_sa)) found = &ci;
        }
        // Options 1 names an opcode without service actions, 2 one with them (SPC-4 6.35.1).
        if (opts == 1 && op_has_sa) return invalid_cdb_field(t, 2, 2), complete(t);
        if (opts == 2 && exists && !op_has_sa) return invalid_cdb_field(t, 2, 2), complete(t);
        if (found == nullptr) {
            d[1] = 0x01;  // not supported
            n = 4;
        } else {
            d[1] = uint8_t((rctd ? 0x80 : 0) | 0x03);
            put_be16(d + 2, found->len);
            std::memcpy(d + 4, found->usage, found->len);
            n = 4 + found->len;
            if (rctd) {
                timeouts(d + n);
                n += 12;
            }
        }
    } else {
        return invalid_cdb_field(t, 2, 2), complete(t);
    }
    data_in(t, d, std::min<size_t>(n, alloc));
    good(t);
}

}  // namespace

// ---- entry points -----------------------------------------------------------------------------

void cw_release(Lun& lun) noexcept {
    lun.cw_busy = false;
    if (lun.removing) return;
    if (Task* next = lun.cw_queue.pop_front()) cw_run(*next);
}

void execute_inquiry_no_lun(Task& t) noexcept {
    if (t.cdb[1] & 0x03) {
        set_sense(t, SenseKey::illegal_request, asc::lun_not_supported);
        return complete(t);
    }
    uint8_t d[96];
    const size_t n = standard_inquiry(nullptr, d);
    data_in(t, d, std::min<size_t>(n, be16(t.cdb + 3)));
    complete(t);
}

void execute_report_luns(Task& t) noexcept {
    const uint8_t* c = t.cdb;
    const uint8_t sel = c[2];
    const uint32_t alloc = be32(c + 6);
    if (sel > 0x02) return invalid_cdb_field(t, 2), complete(t);
    if (alloc < 16) return invalid_cdb_field(t, 6), complete(t);
    Device& dev = *t.priv.dev;
    // 8 bytes per LUN; at most kMaxLunId + 1 LUNs, but copied out in pieces to bound the stack.
    uint8_t hdr[8] = {};
    size_t count = 0;
    if (sel != 0x01)
        for (auto& l : dev.luns) count += l->removing ? 0 : 1;
    put_be32(hdr, uint32_t(count * 8));
    uint8_t d[8 + 8 * 64];
    std::memcpy(d, hdr, 8);
    size_t n = 8;
    for (auto& l : dev.luns) {
        if (sel == 0x01 || l->removing || n + 8 > sizeof(d)) continue;
        encode_lun(l->id, d + n);
        n += 8;
    }
    data_in(t, d, std::min<size_t>(n, alloc));
    complete(t);
}

void execute_request_sense(Task& t, uint32_t* ua) noexcept {
    const bool desc = t.cdb[1] & 0x01;
    const uint8_t alloc = t.cdb[4];
    uint8_t d[kMaxSenseBytes] = {};
    size_t n;
    if (ua == nullptr) {
        n = build_sense(d, desc, SenseKey::illegal_request, asc::lun_not_supported);
    } else if (*ua != 0) {
        const uint32_t bit = *ua & (~*ua + 1);
        *ua &= ~bit;
        n = build_sense(d, desc, SenseKey::unit_attention, ua_asc(bit));
    } else {
        n = build_sense(d, desc, SenseKey::no_sense, asc::no_additional_sense);
    }
    data_in(t, d, std::min<size_t>(n, alloc));
    complete(t);
}

void execute(Task& t) noexcept {
    const uint8_t* c = t.cdb;
    switch (c[0]) {
        case 0x00: return good(t);                                 // TEST UNIT READY
        case 0x12: return inquiry(t);
        case 0x1B:                                                 // START STOP UNIT
            if ((c[4] >> 4) > 0x0B) return invalid_cdb_field(t, 4, 7), complete(t);
            return good(t);
        case 0x08: {
            const uint64_t lba = be24(c + 1) & 0x1FFFFF;
            return read_write(t, lba, c[4] == 0 ? 256 : c[4], 0, 4, false, false);
        }
        case 0x0A: {
            const uint64_t lba = be24(c + 1) & 0x1FFFFF;
            return read_write(t, lba, c[4] == 0 ? 256 : c[4], 0, 4, true, false);
        }
        case 0x28: return read_write(t, be32(c + 2), be16(c + 7), c[1], 7, false, true);
        case 0x2A: return read_write(t, be32(c + 2), be16(c + 7), c[1], 7, true, true);
        case 0xA8: return read_write(t, be32(c + 2), be32(c + 6), c[1], 6, false, true);
        case 0xAA: return read_write(t, be32(c + 2), be32(c + 6), c[1], 6, true, true);
        case 0x88: return read_write(t, be64(c + 2), be32(c + 10), c[1], 10, false, true);
        case 0x8A: return read_write(t, be64(c + 2), be32(c + 10), c[1], 10, true, true);
        case 0x2F: return verify(t, be32(c + 2), be16(c + 7), 7);
        case 0xAF: return verify(t, be32(c + 2), be32(c + 6), 6);
        case 0x8F: return verify(t, be64(c + 2), be32(c + 10), 10);
        case 0x2E: return write_verify(t, be32(c + 2), be16(c + 7), 7);
        case 0xAE: return write_verify(t, be32(c + 2), be32(c + 6), 6);
        case 0x8E: return write_verify(t, be64(c + 2), be32(c + 10), 10);
        case 0x34: return prefetch(t, be32(c + 2), be16(c + 7));
        case 0x90: return prefetch(t, be64(c + 2), be32(c + 10));
        case 0x37: return read_defect_data(t, false);
        case 0xB7: return read_defect_data(t, true);
        case 0x35: return sync_cache(t, be32(c + 2), be16(c + 7));
        case 0x91: return sync_cache(t, be64(c + 2), be32(c + 10));
        case 0x41: return write_same(t, be32(c + 2), be16(c + 7), false);
        case 0x93: return write_same(t, be64(c + 2), be32(c + 10), true);
        case 0x42: return unmap_cmd(t);
        case 0x89: return compare_and_write(t);
        case 0x8B: return orwrite(t);
        case 0x25: return read_capacity10(t);
        case 0x9E: return service_action_in(t);
        case 0x1A: return mode_sense(t, false);
        case 0x5A: return mode_sense(t, true);
        case 0x15: return mode_select(t, false);
        case 0x55: return mode_select(t, true);
        case 0x16:
        case 0x56: return execute_reserve(t);
        case 0x17:
        case 0x57: return execute_release(t);
        case 0x5E: return execute_pr_in(t);
        case 0x5F: return execute_pr_out(t);
        case 0xA3:
            if ((c[1] & 0x1F) != 0x0C) return invalid_cdb_field(t, 1, 4), complete(t);
            return report_opcodes(t);
        default:
            set_sense(t, SenseKey::illegal_request, asc::invalid_command_opcode);
            return complete(t);
    }
}

size_t cdb_length(uint8_t opcode) noexcept {
    switch (opcode >> 5) {
        case 0: return 6;
        case 1:
        case 2: return 10;
        case 4: return 16;
        case 5: return 12;
        default: return 0;
    }
}

DataDir cdb_data_dir(const uint8_t* cdb) noexcept {
    switch (cdb[0]) {
        case 0x0A: case 0x2A: case 0xAA: case 0x8A: case 0x2F: case 0xAF: case 0x8F: case 0x41:
        case 0x93: case 0x42: case 0x89: case 0x15: case 0x55: case 0x5F: case 0x2E: case 0xAE:
        case 0x8E: case 0x8B:
            return DataDir::to_dev;
        case 0x03: case 0x08: case 0x28: case 0xA8: case 0x88: case 0x12: case 0x1A: case 0x5A:
        case 0x25: case 0x9E: case 0xA0: case 0xA3: case 0x5E: case 0x37: case 0xB7:
            return DataDir::from_dev;
        default: return DataDir::none;
    }
}

}  // namespace strata::scsi
