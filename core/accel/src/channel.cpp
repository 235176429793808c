// The per-Thread accel channel: task pool, validation, routing, completion and stats.
#include <strata/accel/accel.h>

#include "internal.h"

namespace strata::accel {

namespace {
constexpr Status kBadArg(const char* why) {
    return Status(Errc::invalid_argument, why);
}

// Sums an iovec array; a null base with a non-zero length is invalid.
bool iov_total(const struct iovec* iov, uint32_t cnt, uint64_t* total) noexcept {
    uint64_t t = 0;
    for (uint32_t i = 0; i < cnt; ++i) {
        if (iov[i].iov_base == nullptr && iov[i].iov_len != 0) return false;
        t += iov[i].iov_len;
    }
    *total = t;
    return true;
}

Status side(const void* flat, const struct iovec* iov, uint32_t cnt, uint64_t len,
            struct iovec& one, const struct iovec*& out, uint32_t& out_cnt, uint64_t& total,
            const char* null_msg) noexcept {
    if (iov != nullptr) {
        if (cnt == 0) return kBadArg("iovec array with iovcnt 0");
        if (!iov_total(iov, cnt, &total)) return kBadArg("iovec with a null base");
        out = iov;
        out_cnt = cnt;
        return {};
    }
    if (flat == nullptr && len != 0) return kBadArg(null_msg);
    one.iov_base = const_cast<void*>(flat);
    one.iov_len = len;
    out = &one;
    out_cnt = 1;
    total = len;
    return {};
}

// Where a task's completion goes: done(ctx) for a single op, else its slot of batch b.
void bind(Task& t, DoneFn done, void* ctx, Batch* b, uint32_t index) noexcept {
    t.done = done;
    t.ctx = ctx;
    t.batch = b;
    t.batch_index = index;
}

}  // namespace

Status normalize(const Op& op, Task& t) noexcept {
    t.op = op;
    t.src = t.dst = nullptr;
    t.src_cnt = t.dst_cnt = 0;
    t.src_len = t.dst_len = 0;
    switch (op.opcode) {
        case Opcode::copy:
        case Opcode::compare:
        case Opcode::copy_crc32c: {
            if (Status s = side(op.src, op.src_iov, op.src_iovcnt, op.len, t.src_one, t.src,
                                t.src_cnt, t.src_len, "null source");
                !s)
                return s;
            if (Status s = side(op.dst, op.dst_iov, op.dst_iovcnt, op.len, t.dst_one, t.dst,
                                t.dst_cnt, t.dst_len, "null destination");
                !s)
                return s;
            if (t.src_len != t.dst_len) return kBadArg("source and destination lengths differ");
            if (op.opcode == Opcode::copy_crc32c && op.crc_dst == nullptr)
                return kBadArg("null crc_dst");
            return {};
        }
        case Opcode::fill:
            return side(op.dst, op.dst_iov, op.dst_iovcnt, op.len, t.dst_one, t.dst, t.dst_cnt,
                        t.dst_len, "null destination");
        case Opcode::crc32c:
            if (op.crc_dst == nullptr) return kBadArg("null crc_dst");
            return side(op.src, op.src_iov, op.src_iovcnt, op.len, t.src_one, t.src, t.src_cnt,
                        t.src_len, "null source");
        case Opcode::xor_: {
            if (op.dst_iov != nullptr || op.src_iov != nullptr)
                return kBadArg("xor takes flat buffers");
            if (op.xor_nsrcs == 0 || op.xor_nsrcs > kMaxXorSources)
                return kBadArg("xor needs 1..32 sources");
            if (op.xor_srcs == nullptr) return kBadArg("null xor source array");
            if (op.len != 0) {
                if (op.dst == nullptr) return kBadArg("null destination");
                for (uint32_t i = 0; i < op.xor_nsrcs; ++i)
                    if (op.xor_srcs[i] == nullptr) return kBadArg("null xor source");
            }
            t.dst_one = {op.dst, op.len};
            t.dst = &t.dst_one;
            t.dst_cnt = 1;
            t.src_len = t.dst_len = op.len;
            return {};
        }
        case Opcode::count_:
            break;
    }
    return kBadArg("unknown opcode");
}

// ---- ChannelImpl ---------------------------------------------------------------------------

ChannelImpl::ChannelImpl(Framework& framework, runtime::Thread& thread,
                         const FrameworkOptions& options)
    : framework_(framework), thread_(thread), tasks_(options.task_count),
      batches_(options.batch_count) {
    stats_.module_ops.assign(modules(framework_).size(), 0);
    poller_ = thread_.register_poller(&ChannelImpl::poll, this, "accel");
}

ChannelImpl::~ChannelImpl() {
    if (poller_ != nullptr) thread_.unregister_poller(poller_);
    if (outstanding_ != 0)
        STRATA_WARNLOG(log_accel, "accel channel destroyed with {} ops outstanding (dropped)",
                       outstanding_);
    for (auto& mc : module_channels_) mc.reset();
}

runtime::PollStatus ChannelImpl::poll(void* ctx) noexcept {
    auto* self = static_cast<ChannelImpl*>(ctx);
    int work = 0;
    for (auto& mc : self->module_channels_)
        if (mc) work += mc->poll();
    return work > 0 ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

size_t ChannelImpl::serving_module(size_t wanted) const noexcept {
    if (wanted >= kMaxModules || !module_channels_[wanted]) return software_index();
    return wanted;
}

const char* ChannelImpl::module_for(Opcode op) const noexcept {
    return modules(framework_)[serving_module(routed_module(framework_, op))]->name();
}

Status ChannelImpl::dispatch(Task& t) noexcept {
    // The route is read once: accel_assign_opc may change it from another Thread meanwhile,
    // and a second read that saw the change counted a fallback that did not happen.
    const size_t want = routed_module(framework_, t.op.opcode);
    const size_t idx = serving_module(want);
    if (idx != want) ++stats_.fallbacks;  // routed to a module this Thread has no channel of
    t.module_index = static_cast<uint8_t>(idx);
    t.channel = this;
    t.pending = 0;
    t.fail_only = false;
    t.status = Status{};
    return module_channels_[idx]->submit(t);
}

Status ChannelImpl::to_software(Task& t) noexcept {
    ++stats_.fallbacks;
    t.module_index = static_cast<uint8_t>(software_index());
    return module_channels_[software_index()]->submit(t);
}

Status ChannelImpl::submit(const Op& op, DoneFn done, void* ctx) noexcept {
    if (done == nullptr) return kBadArg("null callback");
    Task* t = tasks_.get();
    if (t == nullptr) {
        ++stats_.busy;
        return Status(Errc::busy, "accel task pool exhausted");
    }
    if (Status s = normalize(op, *t); !s) {
        tasks_.put(t);
        return s;
    }
    bind(*t, done, ctx, nullptr, 0);
    if (Status s = dispatch(*t); !s) {
        tasks_.put(t);
        return s;
    }
    ++outstanding_;
    return {};
}

Status ChannelImpl::submit_batch(Op* ops, uint32_t count, DoneFn done, void* ctx) noexcept {
    if (done == nullptr || ops == nullptr) return kBadArg("null callback or op array");
    if (count == 0 || count > tasks_.capacity()) return kBadArg("batch size out of range");
    if (tasks_.available() < count || batches_.available() == 0) {
        ++stats_.busy;
        return Status(Errc::busy, "accel task pool exhausted");
    }
    // Validate everything first: a batch is accepted or refused as a whole.
    for (uint32_t i = 0; i < count; ++i) {
        Task probe;
        if (Status s = normalize(ops[i], probe); !s) return s;
    }
    Batch* b = batches_.get();
    b->ops = ops;
    b->remaining = count;
    b->first_failed = UINT32_MAX;
    b->done = done;
    b->ctx = ctx;
    outstanding_ += count;
    for (uint32_t i = 0; i < count; ++i) {
        Task* t = tasks_.get();
        (void)normalize(ops[i], *t);
        bind(*t, nullptr, nullptr, b, i);
        if (Status s = dispatch(*t); !s) {
            // A module refused after validation: the batch is already accepted, so the op
            // completes with that status through the software queue (never inside submit).
            t->status = s;
            t->fail_only = true;
            t->module_index = static_cast<uint8_t>(software_index());
            (void)module_channels_[software_index()]->submit(*t);
        }
    }
    return {};
}

void ChannelImpl::finish(Task& t, Status s) noexcept {
    OpStats& os = stats_.ops[static_cast<size_t>(t.op.opcode)];
    ++os.executed;
    if (!s) ++os.failed;
    os.num_bytes += t.op.opcode == Opcode::fill ? t.dst_len : t.src_len;
    if (t.module_index < stats_.module_ops.size()) ++stats_.module_ops[t.module_index];
    Batch* b = t.batch;
    const DoneFn done = t.done;
    void* const ctx = t.ctx;
    const uint32_t index = t.batch_index;
    tasks_.put(&t);
    --outstanding_;
    if (b == nullptr) {
        done(ctx, s);
        return;
    }
    b->ops[index].status = s;
    if (!s && index < b->first_failed) b->first_failed = index;
    if (--b->remaining != 0) return;
    const Status overall =
        b->first_failed == UINT32_MAX ? Status{} : b->ops[b->first_failed].status;
    const DoneFn bdone = b->done;
    void* const bctx = b->ctx;
    batches_.put(b);
    ++stats_.batches;
    bdone(bctx, overall);
}

void complete_task(Task& task, Status status) noexcept {
    task.channel->finish(task, status);
}
Status fallback_to_software(Task& task) noexcept {
    return task.channel->to_software(task);
}

// ---- Channel -------------------------------------------------------------------------------

Channel::Channel(std::unique_ptr<ChannelImpl> impl) noexcept : impl_(std::move(impl)) {}
Channel::~Channel() {
    if (impl_) fold_gone_stats(impl_->framework(), impl_->stats());
}

Status Channel::submit(const Op& op, DoneFn done, void* ctx) noexcept {
    return impl_->submit(op, done, ctx);
}
Status Channel::submit_batch(Op* ops, uint32_t count, DoneFn done, void* ctx) noexcept {
    return impl_->submit_batch(ops, count, done, ctx);
}
// The convenience forms name their Op's fields with designated initializers (declaration order)
// and go through the one submit path: no per-op cost over submit() itself.
Status Channel::submit_copy(void* dst, const void* src, uint64_t len, DoneFn done,
                            void* ctx) noexcept {
    return impl_->submit(Op{.opcode = Opcode::copy, .dst = dst, .src = src, .len = len}, done, ctx);
}
Status Channel::submit_copyv(const struct iovec* dst_iov, uint32_t dst_iovcnt,
                             const struct iovec* src_iov, uint32_t src_iovcnt, DoneFn done,
                             void* ctx) noexcept {
    if (dst_iov == nullptr || src_iov == nullptr) return kBadArg("null iovec array");
    return impl_->submit(Op{.opcode = Opcode::copy,
                            .dst_iov = dst_iov,
                            .dst_iovcnt = dst_iovcnt,
                            .src_iov = src_iov,
                            .src_iovcnt = src_iovcnt},
                         done, ctx);
}
Status Channel::submit_fill(void* dst, uint8_t fill_byte, uint64_t len, DoneFn done,
                            void* ctx) noexcept {
    return impl_->submit(
        Op{.opcode = Opcode::fill, .dst = dst, .len = len, .fill_byte = fill_byte}, done, ctx);
}
Status Channel::submit_compare(const void* a, const void* b, uint64_t len,
                               uint64_t* miscompare_offset, DoneFn done, void* ctx) noexcept {
    return impl_->submit(Op{.opcode = Opcode::compare,
                            .dst = const_cast<void*>(b),
                            .src = a,
                            .len = len,
                            .miscompare_offset = miscompare_offset},
                         done, ctx);
}
Status Channel::submit_crc32c(uint32_t* crc_dst, const void* src, uint64_t len, uint32_t seed,
                              DoneFn done, void* ctx) noexcept {
    return impl_->submit(
        Op{.opcode = Opcode::crc32c, .src = src, .len = len, .seed = seed, .crc_dst = crc_dst},
        done, ctx);
}
Status Channel::submit_crc32cv(uint32_t* crc_dst, const struct iovec* iov, uint32_t iovcnt,
                               uint32_t seed, DoneFn done, void* ctx) noexcept {
    if (iov == nullptr) return kBadArg("null iovec array");
    return impl_->submit(Op{.opcode = Opcode::crc32c,
                            .src_iov = iov,
                            .src_iovcnt = iovcnt,
                            .seed = seed,
                            .crc_dst = crc_dst},
                         done, ctx);
}
Status Channel::submit_copy_crc32c(void* dst, const void* src, uint64_t len, uint32_t* crc_dst,
                                   uint32_t seed, DoneFn done, void* ctx) noexcept {
    return impl_->submit(Op{.opcode = Opcode::copy_crc32c,
                            .dst = dst,
                            .src = src,
                            .len = len,
                            .seed = seed,
                            .crc_dst = crc_dst},
                         done, ctx);
}
Status Channel::submit_copy_crc32cv(void* dst, const struct iovec* src_iov, uint32_t src_iovcnt,
                                    uint32_t* crc_dst, uint32_t seed, DoneFn done,
                                    void* ctx) noexcept {
    if (src_iov == nullptr) return kBadArg("null iovec array");
    uint64_t total = 0;
    if (!iov_total(src_iov, src_iovcnt, &total)) return kBadArg("iovec with a null base");
    return impl_->submit(Op{.opcode = Opcode::copy_crc32c,
                            .dst = dst,
                            .len = total,
                            .src_iov = src_iov,
                            .src_iovcnt = src_iovcnt,
                            .seed = seed,
                            .crc_dst = crc_dst},
                         done, ctx);
}
Status Channel::submit_xor(void* dst, const void* const* srcs, uint32_t nsrcs, uint64_t len,
                           DoneFn done, void* ctx) noexcept {
    return impl_->submit(Op{.opcode = Opcode::xor_,
                            .dst = dst,
                            .len = len,
                            .xor_srcs = srcs,
                            .xor_nsrcs = nsrcs},
                         done, ctx);
}

const char* Channel::module_for(Opcode op) const noexcept {
    return impl_->module_for(op);
}
uint32_t Channel::tasks_available() const noexcept {
    return impl_->tasks_available();
}
uint32_t Channel::outstanding() const noexcept {
    return impl_->outstanding();
}
const Stats& Channel::stats() const noexcept {
    return impl_->stats();
}

Stats& Stats::operator+=(const Stats& o) {
    for (size_t i = 0; i < kOpcodeCount; ++i) {
        ops[i].executed += o.ops[i].executed;
        ops[i].failed += o.ops[i].failed;
        ops[i].num_bytes += o.ops[i].num_bytes;
    }
    if (module_ops.size() < o.module_ops.size()) module_ops.resize(o.module_ops.size(), 0);
    for (size_t i = 0; i < o.module_ops.size(); ++i) module_ops[i] += o.module_ops[i];
    busy += o.busy;
    fallbacks += o.fallbacks;
    batches += o.batches;
    return *this;
}

}  // namespace strata::accel
