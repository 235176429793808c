// The blobstore's on-disk format (docs/design/blobstore.md): super block, allocation masks,
// metadata pages and their descriptors. Pure functions over byte buffers, no I/O, so the
// loader's parsing is fuzzed on its own (fuzz/blob_md.cpp). Everything on disk is
// little-endian; the structs are laid out without padding and checked by static_asserts.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/blob/blobstore.h>

namespace strata::blob::format {

static_assert(std::endian::native == std::endian::little,
              "the on-disk structs are read in place; a big-endian port needs byte swaps");

inline constexpr char kSignature[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'B', 'S'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kNoPage = UINT32_MAX;
inline constexpr uint32_t kUnallocated = 0;  // a cluster map entry: cluster 0 holds the super block

struct SuperBlock {
    char signature[8];
    uint32_t version;
    uint32_t clean;          // 1: masks on disk are exact (written at unload)
    uint32_t md_page_size;   // kMdPageSize
    uint32_t io_unit_size;   // the bdev's block size at format
    uint32_t cluster_size;   // bytes
    uint32_t max_blobs;      // root slot pairs at the start of the md region
    uint64_t total_clusters;
    uint64_t max_clusters_per_blob;
    // Regions in md pages (kMdPageSize units) from the start of the bdev.
    uint64_t cluster_mask_start, cluster_mask_len;
    uint64_t page_mask_start, page_mask_len;
    uint64_t blobid_mask_start, blobid_mask_len;
    uint64_t md_start, md_len;
    // crc32c of each mask's bytes (ceil(bits / 8)); meaningful when clean.
    uint32_t cluster_mask_crc, page_mask_crc, blobid_mask_crc;
    char bstype[kBsTypeLen];
    // crc32c of bytes 0..139. Every field and this crc are in the first 512-byte sector and
    // the rest is zero up to `crc`, which is then the same constant for every super block (a
    // CRC over a message followed by its own CRC leaves a fixed residue): the first sector
    // alone decides, so a rewrite torn at a sector boundary reads as one whole version, old or
    // new (docs/design/blobstore.md, "Torn super block"). 0 in super blocks written before.
    uint32_t head_crc;
    uint8_t reserved[kMdPageSize - 144 - 4];
    uint32_t crc;  // crc32c of every byte before it
};
static_assert(sizeof(SuperBlock) == kMdPageSize);
static_assert(offsetof(SuperBlock, total_clusters) == 32);
static_assert(offsetof(SuperBlock, cluster_mask_crc) == 112);
static_assert(offsetof(SuperBlock, bstype) == 124);
static_assert(offsetof(SuperBlock, head_crc) == 140);
static_assert(offsetof(SuperBlock, crc) == kMdPageSize - 4);

inline constexpr size_t kMdHeaderSize = 24;
inline constexpr size_t kMdDescBytes = kMdPageSize - kMdHeaderSize - 4;

struct MdPage {
    uint64_t blob_id;
    uint64_t generation;  // of the blob's metadata this page belongs to (1 for the first write)
    uint32_t sequence;    // index in the chain: 0 for the root
    uint32_t next;        // md-region page index of the next page, or kNoPage
    uint8_t descriptors[kMdDescBytes];
    uint32_t crc;  // crc32c of every byte before it
};
static_assert(sizeof(MdPage) == kMdPageSize);
static_assert(offsetof(MdPage, descriptors) == kMdHeaderSize);

// Descriptor: {u8 type, u8 reserved, u16 length} then `length` payload bytes. Type 0 ends a page.
enum DescType : uint8_t {
    kDescEnd = 0,
    kDescInfo = 1,
    kDescExtent = 2,
    kDescXattr = 3,
    kDescExternal = 4,  // the external snapshot: the bdev's name (1..kMaxExternalName bytes)
};
inline constexpr size_t kMaxExternalName = 255;
inline constexpr size_t kDescHeaderSize = 4;

enum InfoFlags : uint32_t {
    kFlagThin = 1u << 0,
    kFlagReadOnly = 1u << 1,
    kFlagSnapshot = 1u << 2,
    kFlagDeleted = 1u << 3,  // a tombstone: the id is free
    kFlagExternal = 1u << 4,  // reads through to a bdev (kDescExternal names it)
};
// An operation over two blobs that a crash may interrupt; resolved at load (see the design doc).
enum PendingOp : uint32_t {
    kPendingNone = 0,
    kPendingSnapshotOf = 1,  // this new snapshot takes `peer`'s clusters
    kPendingMergeInto = 2,   // this snapshot is being deleted into its one clone `peer`
};

struct InfoDesc {
    uint64_t num_clusters;
    uint64_t parent_id;
    uint32_t flags;
    uint32_t pending_op;
    uint64_t pending_peer;
};
static_assert(sizeof(InfoDesc) == 32);

// Extent descriptor payload: u64 first cluster index of the blob, then runs.
struct ExtentRun {
    uint32_t cluster;  // first bdev cluster of the run, kUnallocated for a hole
    uint32_t count;    // >= 1
};
static_assert(sizeof(ExtentRun) == 8);
inline constexpr size_t kMaxRunsPerDesc = (kMdDescBytes - kDescHeaderSize - 8) / sizeof(ExtentRun);

// Xattr payload: u16 name_len, u16 value_len, name bytes, value bytes.
inline constexpr size_t kMaxXattrPayload = kMdDescBytes - kDescHeaderSize;

// A blob's metadata in memory.
struct BlobMd {
    BlobId id = kInvalidBlobId;
    uint64_t generation = 0;
    uint64_t parent_id = kInvalidBlobId;
    uint32_t flags = 0;
    uint32_t pending_op = kPendingNone;
    uint64_t pending_peer = kInvalidBlobId;
    std::vector<uint32_t> clusters;  // size = num_clusters
    std::vector<Xattr> xattrs;
    std::string external;  // the external snapshot bdev (kFlagExternal)
};

inline constexpr BlobId make_blob_id(uint32_t slot) noexcept { return (1ull << 32) | slot; }
// The slot of a well-formed id, or UINT32_MAX.
inline uint32_t blob_slot(BlobId id, uint32_t max_blobs) noexcept {
    if ((id >> 32) != 1) return UINT32_MAX;
    const uint32_t slot = static_cast<uint32_t>(id);
    return slot < max_blobs ? slot : UINT32_MAX;
}

uint32_t page_crc(const void* page) noexcept;  // over the first kMdPageSize - 4 bytes
void seal_page(void* page) noexcept;           // writes the crc
bool page_is_zero(const void* page) noexcept;

// Geometry computed at format from the bdev size and the options.
struct Geometry {
    uint32_t io_unit_size = 0;
    uint32_t cluster_size = 0;
    uint64_t total_clusters = 0;
    uint32_t num_md_pages = 0;
    uint32_t max_blobs = 0;
    uint64_t max_clusters_per_blob = 0;
    uint64_t cluster_mask_start = 0, cluster_mask_len = 0;
    uint64_t page_mask_start = 0, page_mask_len = 0;
    uint64_t blobid_mask_start = 0, blobid_mask_len = 0;
    uint64_t md_start = 0, md_len = 0;
    uint64_t first_data_cluster = 0;  // clusters below hold the super block, masks and md
    uint32_t root_pages() const noexcept { return max_blobs * 2; }
};

Result<Geometry> compute_geometry(uint64_t bdev_bytes, uint32_t block_size, const BsOptions& opts);
SuperBlock make_super(const Geometry& g, std::string_view bstype);  // dirty, sealed
// Writes head_crc and crc: after any change to a super block's fields.
void seal_super(SuperBlock& sb) noexcept;
// The most clusters the store can grow to: what its cluster mask region (sized at format)
// holds, and below 2^32 - 1.
uint64_t max_total_clusters(const Geometry& g) noexcept;
// Checks signature, crc, version and that the geometry is self-consistent and fits a bdev of
// `bdev_bytes` with `block_size`. The message names the failed check.
Result<Geometry> parse_super(const void* page, uint64_t bdev_bytes, uint32_t block_size);

// Encodes md into pages of one generation: page i's `next` is pages[i + 1] (md-region indices;
// pages[0] is the root slot). Call encoded_pages() first to size `pages`.
size_t encoded_pages(const BlobMd& md);
void encode(const BlobMd& md, std::span<const uint32_t> pages, uint8_t* out);

// Checks one page for membership in a chain: crc, blob id, generation, sequence.
Status check_page(const void* page, BlobId id, uint64_t generation, uint32_t sequence) noexcept;
// Decodes the descriptors of a complete chain (pages already checked with check_page).
// Validates: exactly one info descriptor, in the root; extents contiguous from 0 and covering
// num_clusters; clusters inside [first_data_cluster, total_clusters); num_clusters within
// max_clusters_per_blob; xattr names non-empty and unique; nothing overruns a page.
Result<BlobMd> decode(std::span<const uint8_t* const> pages, const Geometry& g);

// A bit mask with the on-disk layout (bit i is byte i / 8, bit i % 8).
class Bitmap {
public:
    Bitmap() = default;
    explicit Bitmap(uint64_t bits) : bits_(bits), bytes_((bits + 7) / 8, 0) {}
    uint64_t size() const noexcept { return bits_; }
    bool test(uint64_t i) const noexcept { return (bytes_[i >> 3] >> (i & 7)) & 1; }
    void set(uint64_t i) noexcept { bytes_[i >> 3] |= static_cast<uint8_t>(1u << (i & 7)); }
    void clear(uint64_t i) noexcept { bytes_[i >> 3] &= static_cast<uint8_t>(~(1u << (i & 7))); }
    // Grows the mask; the new bits are clear.
    void grow(uint64_t bits) {
        STRATA_ASSERT(bits >= bits_);
        bits_ = bits;
        bytes_.resize((bits + 7) / 8, 0);
    }
    // First clear bit in [from, to), or UINT64_MAX.
    uint64_t find_clear(uint64_t from, uint64_t to) const noexcept;
    uint64_t count() const noexcept;
    std::vector<uint8_t>& bytes() noexcept { return bytes_; }
    const std::vector<uint8_t>& bytes() const noexcept { return bytes_; }
    // Bits at and beyond size() must be zero in a loaded mask.
    bool tail_clear() const noexcept;
    friend bool operator==(const Bitmap&, const Bitmap&) = default;

private:
    uint64_t bits_ = 0;
    std::vector<uint8_t> bytes_;
};

}  // namespace strata::blob::format
