#include "raid/raid.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/base/log.h>
#include <strata/env/memory.h>
#include <strata/runtime/host.h>
#include <strata/runtime/task.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_raid);

namespace {
void examine(Bdev& bdev);
void write_config(nlohmann::json& methods);
void fini(std::function<void()> done);
}  // namespace

const Module kRaidModule{"raid", &examine, &write_config, &fini};

Result<RaidLevel> parse_raid_level(std::string_view given) {
    // Case-insensitive, as SPDK's raid_bdev_str_to_level (strcasecmp): "RAID0", "Concat".
    std::string t(given);
    for (char& c : t)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (t == "0" || t == "raid0") return RaidLevel::raid0;
    if (t == "1" || t == "raid1") return RaidLevel::raid1;
    if (t == "concat") return RaidLevel::concat;
    if (t == "5f" || t == "raid5f")
        return Error(Errc::not_supported,
                     fmt::format("raid_level '{}' (raid5f) is not supported by Strata (0, raid0, "
                                 "1, raid1, concat)",
                                 given));
    return Error(
        Errc::invalid_argument,
        fmt::format("raid_level '{}' is not supported (0, raid0, 1, raid1, concat)", given));
}

const char* raid_level_name(RaidLevel l) noexcept {
    switch (l) {
        case RaidLevel::raid0: return "raid0";
        case RaidLevel::raid1: return "raid1";
        case RaidLevel::concat: return "concat";
    }
    return "?";
}

MemberRange raid0_member_range(uint64_t a, uint64_t n, uint64_t S, uint32_t N, uint32_t m) noexcept {
    if (n == 0 || S == 0 || N == 0 || m >= N) return {};
    const uint64_t sa = a / S, se = (a + n - 1) / S;
    uint64_t start;
    if (sa % N == m) start = (sa / N) * S + a % S;
    else if (sa % N < m) start = (sa / N) * S;
    else start = (sa / N + 1) * S;
    uint64_t end;  // exclusive
    if (se % N == m) end = (se / N) * S + (a + n - 1) % S + 1;
    else if (se % N > m) end = (se / N + 1) * S;
    else end = (se / N) * S;
    if (end <= start) return {};
    return {start, end - start};
}

namespace {

using nlohmann::json;

constexpr uint64_t kControlPollNs = 100'000;  // control-path waits (drains, channel releases)

class Raid;
class RaidBdev;

// What a channel needs of a member, published by the control Thread under Raid::mu.
struct SlotView {
    Desc* desc = nullptr;
    bool operational = false;  // receives writes
    bool in_sync = false;      // holds every block: may serve reads
};

struct Slot {
    std::string name;  // "" : an empty slot
    std::unique_ptr<Desc> desc;
    bool operational = false;
    bool in_sync = false;
    bool failing = false;  // a removal is in progress
};

struct RebuildState {
    bool running = false;
    bool cancel = false;
    uint32_t target = 0;
    uint64_t blocks_done = 0;
};

class RaidDevice final : public runtime::IoDevice {
public:
    explicit RaidDevice(Raid& r, const std::string& name) : IoDevice("bdev_raid:" + name), raid(r) {}
    Raid& raid;

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& t) override;
};

class Raid {
public:
    uint64_t id = 0;
    std::string name;
    RaidLevel level = RaidLevel::raid0;
    uint32_t strip_size_kb = 0;
    std::string uuid;
    std::vector<Slot> slots;
    runtime::Thread* ctrl = nullptr;
    enum class State { configuring, online, offline } state = State::configuring;
    RaidBdev* bdev = nullptr;
    bool deleting = false;
    std::vector<std::function<void(Result<void>)>> delete_waiters;
    RebuildState rebuild;
    uint32_t syncs_running = 0;  // channel syncs in flight (the device must outlive them)
    bool destructing = false;    // the bdev is going: no new channel syncs

    // Geometry, fixed when the bdev is registered.
    uint32_t block_size = 0;
    uint64_t num_blocks = 0;
    uint64_t strip_blocks = 0;
    uint64_t member_blocks = 0;               // raid0/raid1: blocks used on each member
    std::vector<uint64_t> concat_start;        // concat: first raid block of each member (+ end)

    // Shared with the channels.
    std::mutex mu;
    std::array<SlotView, kRaidMaxBaseBdevs> view{};
    uint64_t win_begin = 0, win_end = 0;  // the rebuild chunk being copied (writes wait)
    std::atomic<uint32_t> window_inflight{0};
    std::array<std::atomic<uint32_t>, kRaidMaxBaseBdevs> channel_refs{};

    uint32_t width() const noexcept { return static_cast<uint32_t>(slots.size()); }

    void publish() {
        std::lock_guard lock(mu);
        for (uint32_t i = 0; i < width(); ++i) {
            const Slot& s = slots[i];
            view[i] = SlotView{s.desc.get(), s.desc && s.operational, s.desc && s.in_sync};
        }
    }
    uint32_t count(bool need_in_sync) const {
        uint32_t n = 0;
        for (const Slot& s : slots)
            if (s.desc && s.operational && (!need_in_sync || s.in_sync)) ++n;
        return n;
    }
    uint32_t discovered() const {
        uint32_t n = 0;
        for (const Slot& s : slots)
            if (s.desc) ++n;
        return n;
    }
    const char* state_name() const {
        switch (state) {
            case State::configuring: return "configuring";
            case State::online: return "online";
            case State::offline: return "offline";
        }
        return "?";
    }
};

// Module state, on the raids' control Thread.
struct Registry {
    std::mutex mu;  // membership of `raids`, for examine on other Threads
    std::vector<std::unique_ptr<Raid>> raids;
    uint64_t next_id = 1;
    // bdev_raid_set_options: the rebuild copies this much per step (read when a rebuild starts).
    uint32_t process_window_size_kb = kRaidDefaultProcessWindowKb;
};
Registry& registry() { return runtime::current_host().get<Registry>(); }  // per Host (App)
Raid* find_raid(std::string_view name) {
    for (auto& r : registry().raids)
        if (r->name == name) return r.get();
    return nullptr;
}
Raid* find_raid_id(uint64_t id) {
    for (auto& r : registry().raids)
        if (r->id == id) return r.get();
    return nullptr;
}
void erase_raid(uint64_t id) {
    std::lock_guard lock(registry().mu);
    auto& v = registry().raids;
    v.erase(std::remove_if(v.begin(), v.end(), [id](auto& r) { return r->id == id; }), v.end());
}

// ---- data path ----------------------------------------------------------------------------

struct BaseChan {
    Desc* desc = nullptr;
    Channel* ch = nullptr;
    bool operational = false;
    bool in_sync = false;
    bool fail_reported = false;  // this channel saw it fail a write and told the control Thread
    bool retire = false;         // out of the set everywhere: put the channel once idle
    uint32_t outstanding = 0;
};

class RaidChannel final : public runtime::IoChannel {
public:
    explicit RaidChannel(Raid& r) : raid(r) {}
    ~RaidChannel() override;
    void apply() noexcept;  // takes the published member view (on this channel's Thread)
    void put_base(uint32_t slot) noexcept;
    void report_failure(uint32_t slot) noexcept;

    Raid& raid;
    std::array<BaseChan, kRaidMaxBaseBdevs> base{};
    uint64_t win_begin = 0, win_end = 0;
    uint32_t rr = 0;  // round-robin tie break for raid1 reads
    IntrusiveList<BdevIo, QueuedTag> inflight;     // raid1 writes at the members
    IntrusiveList<BdevIo, QueuedTag> window_wait;  // raid1 writes waiting for the rebuild chunk
    IntrusiveList<BdevIo, QueuedTag> parked;       // raid1 writes waiting for a member's failure
};

// Per-I/O state in the BdevIo's module context.
struct RaidIo {
    RaidChannel* ch;
    BdevIo* io;
    uint32_t todo;       // members still to submit to
    uint32_t pending;    // member I/O outstanding
    uint32_t ok_mask;
    uint32_t fail_mask;
    uint32_t tried;      // raid1 reads: members asked
    IoStatus err;
    bool window_counted;
    IoWaitEntry wait;
    // A member completion's context points at tag[slot] (tag[i] == i), which names the member
    // and the RaidIo without a per-member allocation.
    uint8_t tag[kRaidMaxBaseBdevs];

    static RaidIo& from_tag(void* p, uint32_t* slot) noexcept {
        auto* t = static_cast<uint8_t*>(p);
        *slot = *t;
        return *reinterpret_cast<RaidIo*>(t - *slot - offsetof(RaidIo, tag));
    }
};
static_assert(sizeof(RaidIo) <= kModuleIoContextBytes);
static_assert(std::is_standard_layout_v<RaidIo>);

bool overlaps(const BdevIo& io, uint64_t b, uint64_t e) noexcept {
    return b < e && io.offset_blocks() < e && b < io.offset_blocks() + io.num_blocks();
}
uint32_t bit(uint32_t slot) noexcept { return uint32_t{1} << slot; }

void issue(RaidIo& r) noexcept;
void finish(RaidIo& r) noexcept;
void start_raid1_write(RaidChannel& ch, BdevIo& io) noexcept;
void try_resolve(RaidIo& r) noexcept;

class RaidBdev final : public Bdev {
public:
    RaidBdev(Properties p, Raid& r, bool unmap) : Bdev(kRaidModule, std::move(p)), raid(r), dev(r, r.name), unmap_(unmap) {}

    bool supports(IoType t) const noexcept override {
        switch (t) {
            case IoType::read:
            case IoType::write:
            case IoType::write_zeroes:
            case IoType::flush:
            case IoType::reset:
                return true;
            case IoType::unmap: return unmap_;
            default: return false;
        }
    }
    runtime::IoDevice& module_io_device() noexcept override { return dev; }
    void submit(runtime::IoChannel& module_ch, BdevIo& io) noexcept override;
    void destruct(std::function<void()> done) override;
    void info_json(nlohmann::json& out) const override;
    void config_json(nlohmann::json&) const override {}  // the module's write_config covers raids

    Raid& raid;
    RaidDevice dev;

private:
    bool unmap_;
};

std::unique_ptr<runtime::IoChannel> RaidDevice::create_channel(runtime::Thread&) {
    auto ch = std::make_unique<RaidChannel>(raid);
    ch->apply();
    return ch;
}

void RaidChannel::put_base(uint32_t slot) noexcept {
    BaseChan& b = base[slot];
    if (b.ch == nullptr) return;
    put_channel(b.ch);
    b.ch = nullptr;
    raid.channel_refs[slot].fetch_sub(1, std::memory_order_acq_rel);
}

void RaidChannel::apply() noexcept {
    std::array<SlotView, kRaidMaxBaseBdevs> v;
    uint64_t wb, we;
    {
        std::lock_guard lock(raid.mu);
        v = raid.view;
        wb = raid.win_begin;
        we = raid.win_end;
    }
    for (uint32_t i = 0; i < raid.width(); ++i) {
        BaseChan& b = base[i];
        if (v[i].desc != b.desc) {
            // Another member in this slot. The control Thread empties a slot only after every
            // channel let go of the old member, so no channel is held here.
            STRATA_ASSERT(b.ch == nullptr);
            b.desc = v[i].desc;
            b.fail_reported = b.retire = false;
        }
        if (!v[i].operational || b.desc == nullptr) {
            b.operational = b.in_sync = false;
            b.retire = true;
            if (b.outstanding == 0) put_base(i);  // else when its last member I/O completes
            continue;
        }
        if (b.ch == nullptr && !b.retire) {
            // Counted before the get so the control Thread never sees zero while we hold one.
            raid.channel_refs[i].fetch_add(1, std::memory_order_acq_rel);
            b.ch = b.desc->get_channel();
            if (b.ch == nullptr) raid.channel_refs[i].fetch_sub(1, std::memory_order_acq_rel);
        }
        b.operational = b.ch != nullptr && !b.fail_reported && !b.retire;
        b.in_sync = b.operational && v[i].in_sync;
    }
    // The rebuild chunk moved: writes already at the members in the new chunk are counted so the
    // rebuild waits for them; writes that waited for the old chunk go now.
    if (wb != win_begin || we != win_end) {
        win_begin = wb;
        win_end = we;
        for (BdevIo& io : inflight) {
            RaidIo& r = *io.module_ctx<RaidIo>();
            if (!r.window_counted && overlaps(io, wb, we)) {
                r.window_counted = true;
                raid.window_inflight.fetch_add(1, std::memory_order_acq_rel);
            }
        }
        IntrusiveList<BdevIo, QueuedTag> again;
        again.splice_back(window_wait);
        while (BdevIo* io = again.pop_front()) start_raid1_write(*this, *io);
    }
    IntrusiveList<BdevIo, QueuedTag> p;
    p.splice_back(parked);
    while (BdevIo* io = p.pop_front()) try_resolve(*io->module_ctx<RaidIo>());
}

RaidChannel::~RaidChannel() {
    while (BdevIo* io = window_wait.pop_front()) io->complete(Errc::aborted);
    while (BdevIo* io = parked.pop_front()) io->complete(Errc::aborted);
    for (uint32_t i = 0; i < raid.width(); ++i) put_base(i);
}

void fail_member_msg(uint64_t id, uint32_t slot, Desc* token);

void RaidChannel::report_failure(uint32_t slot) noexcept {
    BaseChan& b = base[slot];
    // This channel stops using the member at once; the control Thread fails it everywhere.
    b.operational = b.in_sync = false;
    if (b.fail_reported) return;
    b.fail_reported = true;
    const uint64_t id = raid.id;
    Desc* token = b.desc;
    // One message per failed member and channel (error path, not per I/O).
    (void)raid.ctrl->post([id, slot, token] { fail_member_msg(id, slot, token); });
}

void member_done(void* ctx, const IoStatus& s) {
    uint32_t slot;
    RaidIo& r = RaidIo::from_tag(ctx, &slot);
    RaidChannel& ch = *r.ch;
    BaseChan& b = ch.base[slot];
    --r.pending;
    if (--b.outstanding == 0 && b.retire) ch.put_base(slot);
    if (s.ok()) {
        r.ok_mask |= bit(slot);
    } else {
        r.fail_mask |= bit(slot);
        if (r.err.ok()) r.err = s;
    }
    if (r.pending == 0 && r.todo == 0) finish(r);
}

void resume_issue(void* ctx) { issue(*static_cast<RaidIo*>(ctx)); }

// The member range of this I/O on `slot` (num_blocks 0: nothing there).
MemberRange span_on(const RaidIo& r, uint32_t slot) noexcept {
    const Raid& raid = r.ch->raid;
    const BdevIo& io = *r.io;
    const uint64_t off = io.offset_blocks(), n = io.num_blocks();
    if (io.type() == IoType::reset) return {0, 0};
    switch (raid.level) {
        case RaidLevel::raid1: return {off, n};
        case RaidLevel::raid0:
            return raid0_member_range(off, n, raid.strip_blocks, raid.width(), slot);
        case RaidLevel::concat: {
            const uint64_t b = raid.concat_start[slot], e = raid.concat_start[slot + 1];
            const uint64_t lo = std::max(off, b), hi = std::min(off + n, e);
            if (hi <= lo) return {};
            return {lo - b, hi - lo};
        }
    }
    return {};
}

// The member holding raid block `lba` (raid0, concat).
uint32_t member_of(const Raid& raid, uint64_t lba) noexcept {
    if (raid.level == RaidLevel::raid0) return static_cast<uint32_t>((lba / raid.strip_blocks) % raid.width());
    const auto it = std::upper_bound(raid.concat_start.begin(), raid.concat_start.end(), lba);
    return static_cast<uint32_t>(it - raid.concat_start.begin() - 1);
}

void issue(RaidIo& r) noexcept {
    RaidChannel& ch = *r.ch;
    BdevIo& io = *r.io;
    while (r.todo != 0) {
        const auto slot = static_cast<uint32_t>(std::countr_zero(r.todo));
        BaseChan& b = ch.base[slot];
        const MemberRange m = span_on(r, slot);
        if (io.type() != IoType::reset && m.num_blocks == 0) {
            r.todo &= ~bit(slot);
            continue;
        }
        if (b.ch == nullptr || !b.operational) {
            r.todo &= ~bit(slot);
            r.fail_mask |= bit(slot);
            if (r.err.ok()) r.err = IoStatus{Errc::io_error, 0};
            continue;
        }
        r.tag[slot] = static_cast<uint8_t>(slot);
        void* ctx = &r.tag[slot];
        Desc& d = *b.desc;
        Channel& c = *b.ch;
        const auto iov = io.iovs();
        Status s;
        switch (io.type()) {
            case IoType::read:
                s = readv(d, c, iov.data(), static_cast<int>(iov.size()), m.offset_blocks, m.num_blocks,
                          &member_done, ctx);
                break;
            case IoType::write:
                s = writev(d, c, iov.data(), static_cast<int>(iov.size()), m.offset_blocks, m.num_blocks,
                           &member_done, ctx);
                break;
            case IoType::write_zeroes:
                s = write_zeroes(d, c, m.offset_blocks, m.num_blocks, &member_done, ctx);
                break;
            case IoType::unmap: s = unmap(d, c, m.offset_blocks, m.num_blocks, &member_done, ctx); break;
            case IoType::flush: s = flush(d, c, m.offset_blocks, m.num_blocks, &member_done, ctx); break;
            case IoType::reset: s = reset(d, c, &member_done, ctx); break;
            default: s = Status(Errc::not_supported, "raid I/O type"); break;
        }
        if (s.ok()) {
            r.todo &= ~bit(slot);
            ++r.pending;
            ++b.outstanding;
            continue;
        }
        if (s.code() == Errc::busy) {  // this Thread's bdev_io pool is empty: go on when one frees
            r.wait.fn = &resume_issue;
            r.wait.ctx = &r;
            queue_io_wait(c, r.wait);
            return;
        }
        r.todo &= ~bit(slot);
        r.fail_mask |= bit(slot);
        if (r.err.ok()) r.err = IoStatus{s.code(), 0};
    }
    if (r.pending == 0) finish(r);
}

// raid1 read: the in-sync member with the fewest outstanding I/O, not yet tried.
bool pick_read_member(RaidIo& r) noexcept {
    RaidChannel& ch = *r.ch;
    const uint32_t w = ch.raid.width();
    uint32_t best = UINT32_MAX;
    for (uint32_t k = 0; k < w; ++k) {
        const uint32_t i = (ch.rr + k) % w;
        const BaseChan& b = ch.base[i];
        if (!b.in_sync || b.ch == nullptr || (r.tried & bit(i)) != 0) continue;
        if (best == UINT32_MAX || b.outstanding < ch.base[best].outstanding) best = i;
    }
    if (best == UINT32_MAX) return false;
    ++ch.rr;
    r.tried |= bit(best);
    r.todo = bit(best);
    return true;
}

void complete(RaidIo& r, const IoStatus& s) noexcept { r.io->complete(s); }

void finish(RaidIo& r) noexcept {
    RaidChannel& ch = *r.ch;
    BdevIo& io = *r.io;
    const Raid& raid = ch.raid;
    if (raid.level != RaidLevel::raid1) {
        complete(r, r.fail_mask != 0 ? r.err : IoStatus{});
        return;
    }
    if (io.type() == IoType::read) {
        if (r.ok_mask != 0) {
            complete(r, IoStatus{});
            return;
        }
        // A failed read is retried on another mirror; the member stays (reads do not degrade).
        if (pick_read_member(r)) {
            issue(r);
            return;
        }
        complete(r, r.err.ok() ? IoStatus{Errc::io_error, 0} : r.err);
        return;
    }
    if (io.type() == IoType::reset) {
        complete(r, r.ok_mask != 0 || r.fail_mask == 0 ? IoStatus{} : r.err);
        return;
    }
    ch.inflight.remove(io);
    if (r.window_counted) {
        r.window_counted = false;
        ch.raid.window_inflight.fetch_sub(1, std::memory_order_acq_rel);
    }
    if (r.fail_mask == 0) {
        complete(r, IoStatus{});
        return;
    }
    // Some member failed this write. It is acknowledged once that member is out of the set
    // everywhere, and only if an in-sync member still has it: so a mirror that missed an
    // acknowledged write never serves reads again.
    for (uint32_t m = r.fail_mask; m != 0; m &= m - 1) {
        const auto slot = static_cast<uint32_t>(std::countr_zero(m));
        if (ch.base[slot].desc != nullptr) ch.report_failure(slot);
    }
    try_resolve(r);
}

void try_resolve(RaidIo& r) noexcept {
    RaidChannel& ch = *r.ch;
    for (uint32_t m = r.fail_mask; m != 0; m &= m - 1) {
        const auto slot = static_cast<uint32_t>(std::countr_zero(m));
        if (!ch.base[slot].retire) {
            ch.parked.push_back(*r.io);
            return;
        }
    }
    uint32_t good = 0;
    for (uint32_t m = r.ok_mask; m != 0; m &= m - 1) {
        const auto slot = static_cast<uint32_t>(std::countr_zero(m));
        if (ch.base[slot].in_sync) good |= bit(slot);
    }
    complete(r, good != 0 ? IoStatus{} : (r.err.ok() ? IoStatus{Errc::io_error, 0} : r.err));
}

void start_raid1_write(RaidChannel& ch, BdevIo& io) noexcept {
    if (overlaps(io, ch.win_begin, ch.win_end) && io.type() != IoType::flush) {
        ch.window_wait.push_back(io);
        return;
    }
    RaidIo& r = *io.module_ctx<RaidIo>();
    r.todo = 0;
    for (uint32_t i = 0; i < ch.raid.width(); ++i)
        if (ch.base[i].operational && ch.base[i].ch != nullptr) r.todo |= bit(i);
    if (r.todo == 0) {
        io.complete(Errc::io_error);
        return;
    }
    ch.inflight.push_back(io);
    issue(r);
}

void RaidBdev::submit(runtime::IoChannel& module_ch, BdevIo& io) noexcept {
    auto& ch = static_cast<RaidChannel&>(module_ch);
    RaidIo& r = *io.module_ctx<RaidIo>();
    r.ch = &ch;
    r.io = &io;
    r.todo = r.pending = r.ok_mask = r.fail_mask = r.tried = 0;
    r.err = IoStatus{};
    r.window_counted = false;
    r.wait = IoWaitEntry{};
    const uint32_t all = raid.width() == 32 ? UINT32_MAX : bit(raid.width()) - 1;
    switch (raid.level) {
        case RaidLevel::raid0:
        case RaidLevel::concat:
            if (io.type() == IoType::read || io.type() == IoType::write) {
                // The layer split at strip boundaries (optimal_io_boundary): one member each.
                r.todo = bit(member_of(raid, io.offset_blocks()));
                if (member_of(raid, io.offset_blocks() + io.num_blocks() - 1) != member_of(raid, io.offset_blocks())) {
                    io.complete(Errc::invalid_argument);
                    return;
                }
            } else {
                r.todo = all;
            }
            issue(r);
            return;
        case RaidLevel::raid1:
            if (io.type() == IoType::read) {
                if (!pick_read_member(r)) {
                    io.complete(Errc::io_error);
                    return;
                }
                issue(r);
                return;
            }
            if (io.type() == IoType::reset) {
                for (uint32_t i = 0; i < raid.width(); ++i)
                    if (ch.base[i].operational) r.todo |= bit(i);
                issue(r);
                return;
            }
            start_raid1_write(ch, io);
            return;
    }
}


// ---- control path (the raid's control Thread) ---------------------------------------------

struct ChannelSync {
    runtime::AsyncResult<int> done;
};

// Every channel of the raid takes the published view; resumes once all have.
runtime::Task<void> sync_channels(uint64_t id) {
    Raid* r = find_raid_id(id);
    if (r == nullptr || r->bdev == nullptr || r->destructing) co_return;
    ++r->syncs_running;
    ChannelSync s;
    runtime::for_each_channel(
        r->bdev->dev, [](runtime::IoChannel& c, void*) { static_cast<RaidChannel&>(c).apply(); }, &s,
        [](void* p) { static_cast<ChannelSync*>(p)->done.set(0); });
    (void)co_await s.done;
    if ((r = find_raid_id(id)) != nullptr) --r->syncs_running;
}

void go_offline(Raid& r) {
    if (r.bdev == nullptr) {
        r.state = Raid::State::offline;
        return;
    }
    if (find(r.name) != r.bdev) return;  // already being unregistered
    r.state = Raid::State::offline;      // its bdev lingers until the openers close
    STRATA_NOTICELOG(log_bdev_raid, "raid {} ({}) goes offline: {} of {} members in sync", r.name,
                     raid_level_name(r.level), r.count(true), r.width());
    unregister_bdev(r.name, [](Result<void>) {});  // destruct releases the members
}

// Takes a member out of the set: channels stop using it, then its desc closes. A raid that can no
// longer serve its data goes offline.
runtime::Task<Result<void>> fail_slot(uint64_t id, uint32_t slot, Desc* token, std::string why) {
    Raid* r = find_raid_id(id);
    if (r == nullptr) co_return Error(Errc::not_found, "raid is gone");
    {
        Slot& s = r->slots[slot];
        if (!s.desc || s.desc.get() != token || s.failing) co_return Result<void>{};
        STRATA_NOTICELOG(log_bdev_raid, "raid {}: member {} ({}) leaves: {}", r->name, slot, s.name, why);
        s.failing = true;
        s.operational = s.in_sync = false;
        r->publish();
        if (r->bdev == nullptr) {  // no channels: nothing uses the member
            s.desc.reset();
            s.failing = false;
            r->publish();
            co_return Result<void>{};
        }
    }
    if (r->rebuild.running && (r->rebuild.target == slot || r->count(true) == 0)) r->rebuild.cancel = true;
    co_await sync_channels(id);
    if ((r = find_raid_id(id)) == nullptr) co_return Result<void>{};
    if (r->level != RaidLevel::raid1 || r->count(true) == 0) {
        go_offline(*r);
        co_return Result<void>{};
    }
    // Channels put the member's channel once their I/O on it has completed.
    while (r->channel_refs[slot].load(std::memory_order_acquire) != 0) {
        co_await runtime::sleep_for(kControlPollNs);
        if ((r = find_raid_id(id)) == nullptr) co_return Result<void>{};
    }
    Slot& s = r->slots[slot];
    if (s.desc.get() == token) {
        s.desc.reset();
        s.name.clear();
        s.failing = false;
        r->publish();
    }
    co_return Result<void>{};
}

void fail_member_msg(uint64_t id, uint32_t slot, Desc* token) {
    runtime::spawn(*runtime::current_thread(), fail_slot(id, slot, token, "an I/O failed on it"),
                   [](Result<void>) {});
}

struct IoWait {
    runtime::AsyncResult<IoStatus> r;
    static void cb(void* p, const IoStatus& s) { static_cast<IoWait*>(p)->r.set(s); }
};

runtime::Task<IoStatus> copy_io(Desc* d, Channel* c, bool is_write, void* buf, uint64_t off, uint64_t n) {
    for (;;) {
        IoWait w;
        const Status s = is_write ? write(*d, *c, buf, off, n, &IoWait::cb, &w)
                                  : read(*d, *c, buf, off, n, &IoWait::cb, &w);
        if (s.ok()) co_return co_await w.r;
        if (s.code() != Errc::busy) co_return IoStatus{s.code(), 0};
        co_await runtime::sleep_for(kControlPollNs);
    }
}

// The rebuild's own member channels on the control Thread (counted like a raid channel's).
struct CopyChannels {
    std::array<Channel*, kRaidMaxBaseBdevs> ch{};
    Channel* get(Raid& r, uint32_t i) {
        if (ch[i] == nullptr && r.slots[i].desc) {
            r.channel_refs[i].fetch_add(1, std::memory_order_acq_rel);
            ch[i] = r.slots[i].desc->get_channel();
            if (ch[i] == nullptr) r.channel_refs[i].fetch_sub(1, std::memory_order_acq_rel);
        }
        return ch[i];
    }
    void put(Raid& r, uint32_t i) {
        if (ch[i] == nullptr) return;
        put_channel(ch[i]);
        ch[i] = nullptr;
        r.channel_refs[i].fetch_sub(1, std::memory_order_acq_rel);
    }
};

// Copies every block from the in-sync members onto `target`, one chunk at a time. Writes to the
// chunk being copied wait (the channels hold them) and writes already at the members in it are
// drained first, so a copy never lands on top of newer data.
runtime::Task<void> rebuild_task(uint64_t id, uint32_t target) {
    Raid* r = find_raid_id(id);
    if (r == nullptr) co_return;
    const uint64_t chunk_bytes = uint64_t{registry().process_window_size_kb} * 1024;
    auto mem = env::dma_alloc(chunk_bytes, 4096);
    co_await sync_channels(id);  // from here on every write reaches the target as well
    CopyChannels cc;
    bool ok = mem.ok();
    bool target_failed = false;
    std::string why = ok ? "" : "no memory for the copy buffer";
    uint64_t cursor = 0;
    while (ok) {
        if ((r = find_raid_id(id)) == nullptr) break;
        for (uint32_t i = 0; i < r->width(); ++i)
            if (!r->slots[i].operational) cc.put(*r, i);
        if (r->rebuild.cancel || r->bdev == nullptr) {
            ok = false;
            why = "cancelled";
            break;
        }
        if (cursor >= r->num_blocks) break;
        const uint64_t n = std::min<uint64_t>(std::max<uint64_t>(chunk_bytes / r->block_size, 1),
                                              r->num_blocks - cursor);
        {
            std::lock_guard lock(r->mu);
            r->win_begin = cursor;
            r->win_end = cursor + n;
        }
        co_await sync_channels(id);
        while ((r = find_raid_id(id)) != nullptr && r->window_inflight.load(std::memory_order_acquire) != 0)
            co_await runtime::sleep_for(kControlPollNs / 10);
        if (r == nullptr) break;
        IoStatus st{Errc::io_error, 0};
        for (uint32_t i = 0; i < r->width() && !st.ok(); ++i) {
            if (i == target || !r->slots[i].operational || !r->slots[i].in_sync) continue;
            Channel* c = cc.get(*r, i);
            if (c == nullptr) continue;
            Desc* d = r->slots[i].desc.get();
            st = co_await copy_io(d, c, false, *mem, cursor, n);
            if ((r = find_raid_id(id)) == nullptr) break;
        }
        if (r == nullptr) break;
        if (!st.ok()) {
            ok = false;
            why = fmt::format("no in-sync member could be read at block {}", cursor);
            break;
        }
        if (!r->slots[target].operational) {
            ok = false;
            why = "the target left";
            break;
        }
        Channel* tc = cc.get(*r, target);
        if (tc == nullptr) {
            ok = false;
            why = "the target is being removed";
            break;
        }
        st = co_await copy_io(r->slots[target].desc.get(), tc, true, *mem, cursor, n);
        if ((r = find_raid_id(id)) == nullptr) break;
        if (!st.ok()) {
            ok = false;
            target_failed = true;
            why = fmt::format("writing the target failed at block {}: {}", cursor, errc_name(st.code));
            break;
        }
        cursor += n;
        r->rebuild.blocks_done = cursor;
    }
    if (mem.ok()) env::dma_free(*mem);
    if ((r = find_raid_id(id)) == nullptr) co_return;
    for (uint32_t i = 0; i < r->width(); ++i) cc.put(*r, i);
    {
        std::lock_guard lock(r->mu);
        r->win_begin = r->win_end = 0;
    }
    Slot& t = r->slots[target];
    if (ok && t.operational) {
        t.in_sync = true;
        STRATA_NOTICELOG(log_bdev_raid, "raid {}: rebuild onto {} done ({} blocks)", r->name, t.name, cursor);
    } else {
        STRATA_ERRLOG(log_bdev_raid, "raid {}: rebuild onto {} stopped at block {}: {}", r->name, t.name,
                      cursor, why);
    }
    r->publish();
    co_await sync_channels(id);
    if ((r = find_raid_id(id)) == nullptr) co_return;
    r->rebuild.running = false;
    Slot& t2 = r->slots[target];
    // A target that is neither in sync nor being removed for a reason of its own is taken out, so
    // the raid shows an empty slot to add a member to again.
    if (!t2.in_sync && t2.desc && !t2.failing && !r->rebuild.cancel && r->bdev != nullptr)
        runtime::spawn(*r->ctrl, fail_slot(id, target, t2.desc.get(),
                                           target_failed ? "rebuild write failed" : "rebuild failed"),
                       [](Result<void>) {});
}

void start_rebuild(Raid& r, uint32_t target) {
    r.rebuild = RebuildState{true, false, target, 0};
    STRATA_NOTICELOG(log_bdev_raid, "raid {}: rebuild onto {} starts", r.name, r.slots[target].name);
    runtime::spawn(*r.ctrl, rebuild_task(r.id, target), [] {});
}

runtime::Task<void> destruct_task(uint64_t id, RaidBdev* b) {
    Raid* r = find_raid_id(id);
    STRATA_ASSERT(r != nullptr);
    r->rebuild.cancel = true;
    r->destructing = true;
    while ((r = find_raid_id(id)) != nullptr && (r->rebuild.running || r->syncs_running != 0))
        co_await runtime::sleep_for(kControlPollNs);
    STRATA_ASSERT(r != nullptr);  // a raid with a bdev is erased only here
    runtime::AsyncResult<int> gone;
    runtime::unregister_io_device(
        b->dev, [](void* p) { static_cast<runtime::AsyncResult<int>*>(p)->set(0); }, &gone);
    (void)co_await gone;
    r = find_raid_id(id);
    for (Slot& s : r->slots) {
        s.desc.reset();
        s.operational = s.in_sync = s.failing = false;
    }
    r->publish();
    r->bdev = nullptr;
    r->destructing = false;
    r->state = Raid::State::offline;
    if (r->deleting) {
        auto waiters = std::move(r->delete_waiters);
        erase_raid(id);
        for (auto& w : waiters) w(Result<void>{});
    }
}

void RaidBdev::destruct(std::function<void()> done) {
    runtime::Thread* caller = runtime::current_thread();
    runtime::spawn(*raid.ctrl, destruct_task(raid.id, this), [caller, done = std::move(done)]() mutable {
        if (caller == runtime::current_thread() || caller == nullptr) done();
        else (void)caller->post(std::move(done));
    });
}

json raid_json(const Raid& r) {
    json list = json::array();
    for (const Slot& s : r.slots) {
        json e;
        e["name"] = s.name.empty() ? json(nullptr) : json(s.name);
        e["uuid"] = s.desc ? json(s.desc->bdev().uuid()) : json(nullptr);
        e["is_configured"] = s.desc != nullptr && s.operational;
        e["data_offset"] = 0;
        e["data_size"] = s.desc ? (r.member_blocks != 0 ? r.member_blocks : s.desc->bdev().num_blocks()) : 0;
        list.push_back(std::move(e));
    }
    json out = {{"name", r.name},
                {"uuid", r.bdev != nullptr ? r.bdev->uuid() : r.uuid},
                {"strip_size_kb", r.strip_size_kb},
                {"state", r.state_name()},
                {"raid_level", raid_level_name(r.level)},
                {"superblock", false},
                {"num_base_bdevs", r.width()},
                {"num_base_bdevs_discovered", r.discovered()},
                {"num_base_bdevs_operational", r.count(false)},
                {"base_bdevs_list", std::move(list)}};
    if (r.rebuild.running) {
        const uint64_t done = r.rebuild.blocks_done;
        out["process"] = {{"type", "rebuild"},
                          {"target", r.slots[r.rebuild.target].name},
                          {"progress",
                           {{"blocks", done},
                            {"percent", r.num_blocks ? static_cast<double>(done) * 100.0 / r.num_blocks : 0.0}}}};
    }
    return out;
}

void RaidBdev::info_json(nlohmann::json& out) const { out["raid"] = raid_json(raid); }

// ---- membership ---------------------------------------------------------------------------

void on_base_event(uint64_t id, uint32_t slot, Event e, Bdev& base) {
    if (e != Event::remove) return;
    Raid* r = find_raid_id(id);
    if (r == nullptr || slot >= r->width()) return;
    Slot& s = r->slots[slot];
    if (!s.desc || &s.desc->bdev() != &base) return;
    runtime::spawn(*r->ctrl, fail_slot(id, slot, s.desc.get(), "base bdev removed"), [](Result<void>) {});
}

// Opens and claims the member of `slot`; checks that it fits the raid.
Result<void> attach_slot(Raid& r, uint32_t slot) {
    Slot& s = r.slots[slot];
    const uint64_t id = r.id;
    auto d = open(s.name, true, [id, slot](Event e, Bdev& b) { on_base_event(id, slot, e, b); });
    if (!d) return Error(d.code(), fmt::format("raid {}: base bdev {}: {}", r.name, s.name, d.error().message()));
    if (auto c = claim(**d, kRaidModule); !c)
        return Error(c.code(), fmt::format("raid {}: base bdev {}: {}", r.name, s.name, c.error().message()));
    const Bdev& b = (*d)->bdev();
    for (const Slot& o : r.slots)
        if (o.desc && o.desc->bdev().block_size() != b.block_size())
            return Error(Errc::invalid_argument,
                         fmt::format("raid {}: base bdev {} has {}-byte blocks, the others {}", r.name,
                                     s.name, b.block_size(), o.desc->bdev().block_size()));
    if (r.state == Raid::State::online && b.num_blocks() < r.member_blocks)
        return Error(Errc::invalid_argument,
                     fmt::format("raid {}: base bdev {} has {} blocks, the raid needs {}", r.name, s.name,
                                 b.num_blocks(), r.member_blocks));
    if (r.bdev != nullptr && r.bdev->supports(IoType::unmap) && !b.supports(IoType::unmap))
        return Error(Errc::invalid_argument,
                     fmt::format("raid {}: base bdev {} has no unmap, which the raid offers", r.name, s.name));
    s.desc = std::move(*d);
    s.operational = true;
    s.in_sync = r.state != Raid::State::online;
    s.failing = false;
    return {};
}

Result<void> configure(Raid& r) {
    const uint32_t bs = r.slots[0].desc->bdev().block_size();
    uint64_t min_blocks = UINT64_MAX;
    bool unmap = true, write_cache = false;
    for (const Slot& s : r.slots) {
        min_blocks = std::min(min_blocks, s.desc->bdev().num_blocks());
        unmap = unmap && s.desc->bdev().supports(IoType::unmap);
        write_cache = write_cache || s.desc->bdev().properties().write_cache;
    }
    uint64_t strip = 0;
    if (r.level != RaidLevel::raid1) {
        const uint64_t bytes = uint64_t{r.strip_size_kb} * 1024;
        if (bytes < bs)
            return Error(Errc::invalid_argument,
                         fmt::format("raid {}: strip size {} KiB is smaller than the {}-byte block", r.name,
                                     r.strip_size_kb, bs));
        strip = bytes / bs;
    }
    uint64_t total = 0;
    r.concat_start.clear();
    switch (r.level) {
        case RaidLevel::raid0:
            r.member_blocks = min_blocks / strip * strip;
            total = r.member_blocks * r.width();
            break;
        case RaidLevel::raid1:
            r.member_blocks = min_blocks;
            total = min_blocks;
            break;
        case RaidLevel::concat:
            r.member_blocks = 0;
            for (const Slot& s : r.slots) {
                r.concat_start.push_back(total);
                total += s.desc->bdev().num_blocks() / strip * strip;
            }
            r.concat_start.push_back(total);
            break;
    }
    if (total == 0 || (r.level == RaidLevel::raid0 && r.member_blocks == 0))
        return Error(Errc::invalid_argument,
                     fmt::format("raid {}: base bdevs are smaller than one strip", r.name));
    for (size_t i = 0; i + 1 < r.concat_start.size(); ++i)
        if (r.concat_start[i] == r.concat_start[i + 1])
            return Error(Errc::invalid_argument,
                         fmt::format("raid {}: base bdev {} is smaller than one strip", r.name, r.slots[i].name));
    r.block_size = bs;
    r.num_blocks = total;
    r.strip_blocks = strip;
    Bdev::Properties p;
    p.name = r.name;
    p.product_name = "Raid Volume";
    p.uuid = r.uuid;
    p.block_size = bs;
    p.num_blocks = total;
    p.write_cache = write_cache;
    p.optimal_io_boundary = static_cast<uint32_t>(strip);
    auto b = std::make_unique<RaidBdev>(std::move(p), r, unmap);
    RaidBdev* raw = b.get();
    for (Slot& s : r.slots) s.operational = s.in_sync = true;
    r.bdev = raw;
    r.state = Raid::State::online;
    r.publish();
    runtime::register_io_device(raw->dev);
    auto res = register_bdev(std::move(b));  // frees the bdev on failure
    if (!res) {
        r.bdev = nullptr;
        r.state = Raid::State::configuring;
        return res.error();
    }
    r.uuid = raw->uuid();
    STRATA_NOTICELOG(log_bdev_raid, "raid {} online: {} over {} members, {} blocks of {} bytes", r.name,
                     raid_level_name(r.level), r.width(), total, bs);
    return {};
}

Result<void> maybe_configure(Raid& r) {
    if (r.state != Raid::State::configuring || r.deleting) return {};
    if (r.discovered() != r.width()) return {};
    return configure(r);
}

// Attaches `name` to the configuring raids of the calling (control) Thread that wait for it.
void examine_here(const std::string& name) {
    std::vector<uint64_t> ids;
    for (auto& r : registry().raids)
        if (r->ctrl == runtime::current_thread()) ids.push_back(r->id);
    for (uint64_t id : ids) {
        Raid* r = find_raid_id(id);
        if (r == nullptr || r->state != Raid::State::configuring || r->deleting) continue;
        for (uint32_t i = 0; i < r->width(); ++i) {
            if (r->slots[i].name != name || r->slots[i].desc) continue;
            if (auto a = attach_slot(*r, i); !a) {
                STRATA_ERRLOG(log_bdev_raid, "{}", a.error().message());
                break;
            }
            if (auto c = maybe_configure(*r); !c)
                STRATA_ERRLOG(log_bdev_raid, "raid {}: {}", r->name, c.error().message());
            break;
        }
    }
}

// Any Thread (the one registering the bdev): each raid's state is touched on its control
// Thread only, so the work goes there.
void examine(Bdev& bdev) {
    std::vector<runtime::Thread*> ctrls;
    {
        std::lock_guard lock(registry().mu);
        for (auto& r : registry().raids)
            if (std::find(ctrls.begin(), ctrls.end(), r->ctrl) == ctrls.end()) ctrls.push_back(r->ctrl);
    }
    for (runtime::Thread* t : ctrls) {
        if (t == runtime::current_thread()) examine_here(bdev.name());
        else (void)t->post([name = bdev.name()] { examine_here(name); });
    }
}

void write_config(nlohmann::json& methods) {
    // SPDK writes its options first in the raid module's part of the bdev section.
    methods.push_back({{"method", "bdev_raid_set_options"},
                       {"params",
                        {{"process_window_size_kb", registry().process_window_size_kb},
                         {"process_max_bandwidth_mb_sec", 0}}}});
    for (auto& r : registry().raids) {
        if (r->deleting) continue;
        json bases = json::array();
        for (const Slot& s : r->slots)
            if (!s.name.empty()) bases.push_back(s.name);
        if (bases.empty()) continue;
        json params = {{"name", r->name},
                       {"raid_level", raid_level_name(r->level)},
                       {"strip_size_kb", r->strip_size_kb},
                       {"superblock", false},
                       {"base_bdevs", std::move(bases)}};
        if (!r->uuid.empty()) params["uuid"] = r->uuid;
        methods.push_back({{"method", "bdev_raid_create"}, {"params", std::move(params)}});
    }
}

void fini(std::function<void()> done) {
    std::vector<std::string> names;
    for (auto& r : registry().raids) names.push_back(r->name);
    if (names.empty()) {
        done();
        return;
    }
    auto remaining = std::make_shared<size_t>(names.size());
    for (const auto& n : names)
        raid_delete(n, [remaining, done](Result<void>) {
            if (--*remaining == 0) done();
        });
}

bool power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

// ---- public control functions -------------------------------------------------------------

Result<void> raid_create(const RaidCreateOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "raid bdev needs a name");
    if (o.superblock)
        return Error(Errc::not_supported,
                     "superblock is not supported: raids are described by the config (save_config)");
    const size_t n = o.base_bdevs.size();
    const size_t min = o.level == RaidLevel::raid1 ? 2 : 1;
    if (n < min || n > kRaidMaxBaseBdevs)
        return Error(Errc::invalid_argument,
                     fmt::format("{} needs {} to {} base bdevs, got {}", raid_level_name(o.level), min,
                                 kRaidMaxBaseBdevs, n));
    if (o.level == RaidLevel::raid1) {
        if (o.strip_size_kb != 0)
            return Error(Errc::invalid_argument, "raid1 has no strip: strip_size_kb must be 0 or absent");
    } else if (!power_of_two(o.strip_size_kb)) {
        return Error(Errc::invalid_argument,
                     fmt::format("{} needs strip_size_kb, a power of two (got {})", raid_level_name(o.level),
                                 o.strip_size_kb));
    }
    for (size_t i = 0; i < n; ++i) {
        const std::string& b = o.base_bdevs[i];
        if (b.empty()) return Error(Errc::invalid_argument, "a base bdev name is empty");
        if (b == o.name) return Error(Errc::invalid_argument, "a raid cannot be its own base bdev");
        for (size_t j = 0; j < i; ++j)
            if (o.base_bdevs[j] == b)
                return Error(Errc::invalid_argument, fmt::format("base bdev {} is listed twice", b));
        for (auto& r : registry().raids)
            for (const Slot& s : r->slots)
                if (s.name == b)
                    return Error(Errc::already_exists,
                                 fmt::format("base bdev {} is already a member of raid {}", b, r->name));
    }
    if (find_raid(o.name) != nullptr || find(o.name) != nullptr)
        return Error(Errc::already_exists, fmt::format("bdev {} already exists", o.name));
    runtime::Thread* ctrl = runtime::current_thread();
    if (ctrl == nullptr) return Error(Errc::invalid_argument, "raid_create outside a Thread");
    auto raid = std::make_unique<Raid>();
    Raid& r = *raid;
    r.id = registry().next_id++;
    r.name = o.name;
    r.level = o.level;
    r.strip_size_kb = o.strip_size_kb;
    r.uuid = o.uuid;
    r.ctrl = ctrl;
    r.slots.resize(n);
    for (size_t i = 0; i < n; ++i) r.slots[i].name = o.base_bdevs[i];
    {
        std::lock_guard lock(registry().mu);
        registry().raids.push_back(std::move(raid));
    }
    Result<void> res;
    for (uint32_t i = 0; i < r.width() && res.ok(); ++i)
        if (find(r.slots[i].name) != nullptr) res = attach_slot(r, i);
    if (res.ok()) res = maybe_configure(r);
    if (!res) {
        for (Slot& s : r.slots) s.desc.reset();
        erase_raid(r.id);
        return res;
    }
    if (r.state == Raid::State::configuring)
        STRATA_INFOLOG(log_bdev_raid, "raid {} configuring: {} of {} base bdevs present", r.name,
                       r.discovered(), r.width());
    return {};
}

void raid_delete(const std::string& name, std::function<void(Result<void>)> done) {
    Raid* r = find_raid(name);
    if (r == nullptr) {
        done(Error(Errc::not_found, fmt::format("raid bdev {} not found", name)));
        return;
    }
    if (r->deleting) {
        r->delete_waiters.push_back(std::move(done));
        return;
    }
    r->deleting = true;
    if (r->bdev != nullptr) {
        r->delete_waiters.push_back(std::move(done));
        if (find(name) == r->bdev) unregister_bdev(name, [](Result<void>) {});  // else already going
        return;  // destruct_task finishes the deletion
    }
    for (Slot& s : r->slots) s.desc.reset();
    erase_raid(r->id);
    done(Result<void>{});
}

Result<void> raid_add_base_bdev(const std::string& raid, const std::string& base) {
    Raid* r = find_raid(raid);
    if (r == nullptr || r->deleting) return Error(Errc::not_found, fmt::format("raid bdev {} not found", raid));
    if (find(base) == nullptr) return Error(Errc::not_found, fmt::format("base bdev {} not found", base));
    for (auto& o : registry().raids)
        for (const Slot& s : o->slots)
            if (s.name == base)
                return Error(Errc::already_exists,
                             fmt::format("base bdev {} is already a member of raid {}", base, o->name));
    if (r->state == Raid::State::offline)
        return Error(Errc::invalid_argument, fmt::format("raid bdev {} is offline", raid));
    if (r->state == Raid::State::online && r->level != RaidLevel::raid1)
        return Error(Errc::not_supported,
                     fmt::format("raid bdev {} is {}: only raid1 takes members while online", raid,
                                 raid_level_name(r->level)));
    if (r->rebuild.running)
        return Error(Errc::busy, fmt::format("raid bdev {} is rebuilding already", raid));
    uint32_t slot = UINT32_MAX;
    for (uint32_t i = 0; i < r->width() && slot == UINT32_MAX; ++i)
        if (r->slots[i].name.empty()) slot = i;
    if (slot == UINT32_MAX)
        return Error(Errc::invalid_argument, fmt::format("raid bdev {} has no empty slot", raid));
    r->slots[slot].name = base;
    if (auto a = attach_slot(*r, slot); !a) {
        r->slots[slot].name.clear();
        r->slots[slot].desc.reset();
        return a;
    }
    if (r->state == Raid::State::configuring) {
        if (auto c = maybe_configure(*r); !c) return c;
        return {};
    }
    r->publish();
    start_rebuild(*r, slot);
    return {};
}

void raid_remove_base_bdev(const std::string& base, std::function<void(Result<void>)> done) {
    for (auto& rp : registry().raids) {
        Raid& r = *rp;
        for (uint32_t i = 0; i < r.width(); ++i) {
            Slot& s = r.slots[i];
            if (s.name != base) continue;
            if (r.deleting) {
                done(Error(Errc::busy, fmt::format("raid bdev {} is being deleted", r.name)));
                return;
            }
            if (!s.desc || r.bdev == nullptr) {
                s.desc.reset();
                s.name.clear();
                s.operational = s.in_sync = false;
                r.publish();
                done(Result<void>{});
                return;
            }
            runtime::spawn(*r.ctrl, fail_slot(r.id, i, s.desc.get(), "removed by request"), std::move(done));
            return;
        }
    }
    done(Error(Errc::not_found, fmt::format("base bdev {} is not a member of any raid", base)));
}

Result<nlohmann::json> raid_get_bdevs(std::string_view category) {
    if (category != "all" && category != "online" && category != "configuring" && category != "offline")
        return Error(Errc::invalid_argument,
                     fmt::format("category '{}' is not one of all, online, configuring, offline", category));
    json out = json::array();
    for (auto& r : registry().raids)
        if (category == "all" || category == r->state_name()) out.push_back(raid_json(*r));
    return out;
}

Result<void> raid_set_options(uint32_t process_window_size_kb) {
    if (process_window_size_kb == 0)
        return Error(Errc::invalid_argument, "process_window_size_kb must be positive");
    if (process_window_size_kb > 64 * 1024)
        return Error(Errc::invalid_argument, "process_window_size_kb is larger than 64 MiB");
    registry().process_window_size_kb = process_window_size_kb;
    return {};
}
uint32_t raid_process_window_size_kb() {
    return registry().process_window_size_kb;
}

}  // namespace strata::bdev
