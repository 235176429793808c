// Lvol internals shared by lvol.cpp (stores, lvols, metadata) and bdev.cpp (the lvol bdev).
#pragma once

#include <map>
#include <memory>
#include <string>

#include <strata/base/intrusive_list.h>
#include <strata/base/log.h>
#include <strata/bdev/module.h>
#include <strata/blob/blobstore.h>
#include <strata/lvol/lvol.h>
#include <strata/runtime/io_device.h>

namespace strata::lvol {

STRATA_LOG_COMPONENT(lvol);

struct Store;
class LvolBdev;

struct Lvol {
    Store* lvs = nullptr;
    std::string name;
    std::string uuid;
    blob::BlobId id = blob::kInvalidBlobId;
    blob::Blob* blob = nullptr;  // open for the lvol's lifetime in memory
    bdev::Bdev* bdev = nullptr;  // an LvolBdev; null while unregistered (or degraded)
    // Applied by the blobstore to the clusters a delete or a shrinking resize frees; kept in
    // the blob's "clear_method" xattr (SPDK keeps it in memory only: lost at restart there).
    ClearMethod clear_method = ClearMethod::unmap;
    std::string alias() const;
};

// One Thread's view of a store: its blob channel, and the bdev I/O that found the blob
// channel's request pool empty (resubmitted from the next completion on this channel).
class LvsChannel final : public runtime::IoChannel {
public:
    explicit LvsChannel(blob::Channel* ch) noexcept : ch(ch) {}
    ~LvsChannel() override { blob::put_channel(ch); }
    blob::Channel* ch;
    IntrusiveList<bdev::BdevIo, bdev::QueuedTag> waiting;
};

// The IoDevice behind every lvol bdev of a store: one LvsChannel per Thread.
class StoreChannels final : public runtime::IoDevice {
public:
    explicit StoreChannels(Store& s) : runtime::IoDevice("lvs_channels"), store(s) {}
    Store& store;

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;
};

struct Store {
    std::string uuid;
    std::string name;
    std::string base_bdev;
    std::unique_ptr<blob::BlobStore> bs;
    blob::Blob* super = nullptr;
    // A read-only desc of the base, only for its remove event (the blobstore's own desc does
    // the I/O and holds the claim).
    std::unique_ptr<bdev::Desc> watch;
    std::unique_ptr<StoreChannels> channels;
    bool channels_registered = false;
    std::map<blob::BlobId, std::unique_ptr<Lvol>> lvols;
    bool removing = false;
};

// bdev.cpp
Result<bdev::Bdev*> register_lvol_bdev(Lvol& lvol);
void detach_lvol_bdev(bdev::Bdev& b) noexcept;  // the Lvol is going: the bdev forgets it

}  // namespace strata::lvol
