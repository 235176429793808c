// The lvol bdev: each bdev I/O becomes one blob I/O on the Thread's blob channel. Nothing is
// allocated per I/O: the bdev_io carries its channel in module_ctx, and I/O refused because the
// blob channel's request pool is empty waits on an intrusive list of that channel.
#include <nlohmann/json.hpp>

#include "internal.h"

namespace strata::lvol {

namespace {

struct IoCtx {
    LvsChannel* ch;
    blob::Blob* blob;
};

void on_blob_done(void* ctx, Status s) noexcept;

Status dispatch(bdev::BdevIo& io) noexcept {
    IoCtx& c = *io.module_ctx<IoCtx>();
    blob::Channel& ch = *c.ch->ch;
    blob::Blob& b = *c.blob;
    auto iov = io.iovs();
    switch (io.type()) {
    case bdev::IoType::read:
        return blob::readv(ch, b, iov.data(), static_cast<int>(iov.size()), io.offset_blocks(),
                           io.num_blocks(), &on_blob_done, &io);
    case bdev::IoType::write:
        return blob::writev(ch, b, iov.data(), static_cast<int>(iov.size()), io.offset_blocks(),
                            io.num_blocks(), &on_blob_done, &io);
    case bdev::IoType::write_zeroes:
        return blob::write_zeroes(ch, b, io.offset_blocks(), io.num_blocks(), &on_blob_done, &io);
    case bdev::IoType::unmap:
        return blob::unmap(ch, b, io.offset_blocks(), io.num_blocks(), &on_blob_done, &io);
    case bdev::IoType::flush:
        return blob::flush(ch, b, &on_blob_done, &io);
    default:
        return Status(Errc::not_supported, "lvol: unsupported I/O type");
    }
}

// Submits what waits on the channel until the pool runs dry again.
void drain_waiting(LvsChannel& ch) noexcept {
    while (bdev::BdevIo* io = ch.waiting.pop_front()) {
        const Status s = dispatch(*io);
        if (s.code() == Errc::busy) {
            ch.waiting.push_front(*io);
            return;
        }
        if (!s.ok()) io->complete(s.code());
    }
}

void on_blob_done(void* ctx, Status s) noexcept {
    auto* io = static_cast<bdev::BdevIo*>(ctx);
    LvsChannel& ch = *io->module_ctx<IoCtx>()->ch;
    io->complete(s.code());
    // A request went back to the pool.
    if (!ch.waiting.empty()) drain_waiting(ch);
}

}  // namespace

class LvolBdev final : public bdev::Bdev {
public:
    LvolBdev(Properties p, Lvol& l) : bdev::Bdev(kLvolModule, std::move(p)), lvol_(&l) {
        blob_ = l.blob;
        channels_ = l.lvs->channels.get();
    }

    bool supports(bdev::IoType t) const noexcept override {
        switch (t) {
        case bdev::IoType::read:
        case bdev::IoType::write:
        case bdev::IoType::write_zeroes:
        case bdev::IoType::unmap:
        case bdev::IoType::flush:
        case bdev::IoType::reset:
            return true;
        default:
            return false;
        }
    }
    runtime::IoDevice& module_io_device() noexcept override { return *channels_; }

    void submit(runtime::IoChannel& ch, bdev::BdevIo& io) noexcept override {
        auto& lch = static_cast<LvsChannel&>(ch);
        if (io.type() == bdev::IoType::reset) {
            // Nothing to reset in a volume: its I/O completes on its own (as SPDK's lvol).
            io.complete();
            return;
        }
        *io.module_ctx<IoCtx>() = IoCtx{&lch, blob_};
        // Keep order behind I/O already waiting for a request.
        if (!lch.waiting.empty()) {
            lch.waiting.push_back(io);
            return;
        }
        const Status s = dispatch(io);
        if (s.code() == Errc::busy) lch.waiting.push_back(io);
        else if (!s.ok()) io.complete(s.code());
    }

    void destruct(std::function<void()> done) override {
        if (lvol_ != nullptr) lvol_->bdev = nullptr;
        lvol_ = nullptr;
        done();
    }

    void info_json(nlohmann::json& out) const override {
        if (lvol_ == nullptr) return;
        const Lvol& l = *lvol_;
        const blob::Blob& b = *l.blob;
        nlohmann::json j = {{"lvol_store_uuid", l.lvs->uuid},
                            {"base_bdev", l.lvs->base_bdev},
                            {"thin_provision", b.is_thin()},
                            {"num_allocated_clusters", b.num_allocated_clusters()},
                            {"snapshot", b.is_snapshot()},
                            {"clone", b.is_clone()},
                            {"esnap_clone", !b.external_snapshot().empty()}};
        if (!b.external_snapshot().empty())
            j["external_snapshot_name"] = std::string(b.external_snapshot());
        if (b.is_clone()) {
            auto it = l.lvs->lvols.find(b.parent_id());
            if (it != l.lvs->lvols.end()) j["base_snapshot"] = it->second->name;
        }
        if (b.is_snapshot()) {
            nlohmann::json clones = nlohmann::json::array();
            for (blob::BlobId c : l.lvs->bs->clones(b.id())) {
                auto it = l.lvs->lvols.find(c);
                if (it != l.lvs->lvols.end()) clones.push_back(it->second->name);
            }
            j["clones"] = std::move(clones);
        }
        out["lvol"] = std::move(j);
    }
    // On-disk state: examine of the base brings the lvol back; nothing to replay.
    void config_json(nlohmann::json&) const override {}

    void forget() noexcept { lvol_ = nullptr; }

private:
    Lvol* lvol_;
    blob::Blob* blob_;
    StoreChannels* channels_;
};

std::unique_ptr<runtime::IoChannel> StoreChannels::create_channel(runtime::Thread&) {
    if (store.bs == nullptr) return nullptr;
    blob::Channel* ch = store.bs->get_channel();
    if (ch == nullptr) return nullptr;
    return std::make_unique<LvsChannel>(ch);
}

Result<bdev::Bdev*> register_lvol_bdev(Lvol& l) {
    const bdev::Bdev& base = l.lvs->watch->bdev();
    bdev::Bdev::Properties p;
    p.name = l.uuid;
    p.aliases = {l.alias()};
    p.uuid = l.uuid;
    p.product_name = "Logical Volume";
    p.block_size = base.block_size();
    p.num_blocks = l.blob->num_io_units();
    p.write_cache = base.properties().write_cache;
    // A blob request carries at most blob::kMaxIoVecs iovecs: the bdev layer splits the rest.
    p.max_num_segments = uint32_t(blob::kMaxIoVecs);
    auto owned = std::make_unique<LvolBdev>(std::move(p), l);
    LvolBdev* raw = owned.get();
    l.bdev = raw;
    auto r = bdev::register_bdev(std::move(owned));
    if (!r.ok()) l.bdev = nullptr;
    return r;
}

void detach_lvol_bdev(bdev::Bdev& b) noexcept { static_cast<LvolBdev&>(b).forget(); }

}  // namespace strata::lvol
