#include "format.h"

#include <algorithm>
#include <unordered_set>

#include <fmt/format.h>

#include <strata/base/crc.h>

namespace strata::blob::format {

namespace {
uint64_t pages_for_bits(uint64_t bits) { return (bits + 8ull * kMdPageSize - 1) / (8ull * kMdPageSize); }

template <class T>
T load(const uint8_t* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <class T>
void store(uint8_t* p, const T& v) noexcept {
    std::memcpy(p, &v, sizeof v);
}

Error corrupt(std::string msg) { return Error(Errc::corrupt, std::move(msg)); }
}  // namespace

uint32_t page_crc(const void* page) noexcept { return crc32c(0, page, kMdPageSize - 4); }

void seal_page(void* page) noexcept {
    const uint32_t c = page_crc(page);
    std::memcpy(static_cast<uint8_t*>(page) + kMdPageSize - 4, &c, 4);
}

bool page_is_zero(const void* page) noexcept {
    const auto* p = static_cast<const uint8_t*>(page);
    return p[0] == 0 && std::memcmp(p, p + 1, kMdPageSize - 1) == 0;
}

Result<Geometry> compute_geometry(uint64_t bdev_bytes, uint32_t block_size, const BsOptions& o) {
    Geometry g;
    if (block_size == 0 || kMdPageSize % block_size != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("block size {} does not divide the {}-byte metadata page",
                                 block_size, kMdPageSize));
    if (o.cluster_sz < kMdPageSize || o.cluster_sz % kMdPageSize != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("cluster_sz {} is not a multiple of {}", o.cluster_sz, kMdPageSize));
    if (o.bstype.size() > kBsTypeLen)
        return Error(Errc::invalid_argument, fmt::format("bstype longer than {} bytes", kBsTypeLen));
    if (o.max_clusters_per_blob == 0)
        return Error(Errc::invalid_argument, "max_clusters_per_blob must be positive");
    g.io_unit_size = block_size;
    g.cluster_size = o.cluster_sz;
    g.total_clusters = bdev_bytes / o.cluster_sz;
    if (g.total_clusters >= UINT32_MAX)
        return Error(Errc::invalid_argument, "more than 2^32 clusters: use a larger cluster_sz");
    uint64_t md = o.num_md_pages ? o.num_md_pages : g.total_clusters;
    md = std::max<uint64_t>(md, 8);
    if (md > (1u << 30)) return Error(Errc::invalid_argument, "num_md_pages too large");
    g.num_md_pages = static_cast<uint32_t>(md);
    g.max_blobs = g.num_md_pages / 4;
    g.max_clusters_per_blob = std::min<uint64_t>(o.max_clusters_per_blob, g.total_clusters);
    uint64_t page = 1;  // page 0: super block
    g.cluster_mask_start = page;
    g.cluster_mask_len = pages_for_bits(g.total_clusters);
    page += g.cluster_mask_len;
    g.page_mask_start = page;
    g.page_mask_len = pages_for_bits(g.num_md_pages);
    page += g.page_mask_len;
    g.blobid_mask_start = page;
    g.blobid_mask_len = pages_for_bits(g.max_blobs);
    page += g.blobid_mask_len;
    g.md_start = page;
    g.md_len = g.num_md_pages;
    page += g.md_len;
    const uint64_t pages_per_cluster = o.cluster_sz / kMdPageSize;
    g.first_data_cluster = (page + pages_per_cluster - 1) / pages_per_cluster;
    if (g.first_data_cluster >= g.total_clusters)
        return Error(Errc::invalid_argument,
                     fmt::format("bdev of {} bytes too small: metadata needs {} of its {} clusters",
                                 bdev_bytes, g.first_data_cluster, g.total_clusters));
    return g;
}

SuperBlock make_super(const Geometry& g, std::string_view bstype) {
    SuperBlock sb;
    std::memset(&sb, 0, sizeof sb);
    std::memcpy(sb.signature, kSignature, sizeof kSignature);
    sb.version = kVersion;
    sb.md_page_size = kMdPageSize;
    sb.io_unit_size = g.io_unit_size;
    sb.cluster_size = g.cluster_size;
    sb.max_blobs = g.max_blobs;
    sb.total_clusters = g.total_clusters;
    sb.max_clusters_per_blob = g.max_clusters_per_blob;
    sb.cluster_mask_start = g.cluster_mask_start;
    sb.cluster_mask_len = g.cluster_mask_len;
    sb.page_mask_start = g.page_mask_start;
    sb.page_mask_len = g.page_mask_len;
    sb.blobid_mask_start = g.blobid_mask_start;
    sb.blobid_mask_len = g.blobid_mask_len;
    sb.md_start = g.md_start;
    sb.md_len = g.md_len;
    std::memcpy(sb.bstype, bstype.data(), std::min(bstype.size(), kBsTypeLen));
    seal_super(sb);
    return sb;
}

void seal_super(SuperBlock& sb) noexcept {
    sb.head_crc = crc32c(0, &sb, offsetof(SuperBlock, head_crc));
    seal_page(&sb);
}

uint64_t max_total_clusters(const Geometry& g) noexcept {
    return std::min<uint64_t>(g.cluster_mask_len * 8 * kMdPageSize, UINT32_MAX - 1);
}

Result<Geometry> parse_super(const void* page, uint64_t bdev_bytes, uint32_t block_size) {
    SuperBlock sb;
    std::memcpy(&sb, page, sizeof sb);
    if (std::memcmp(sb.signature, kSignature, sizeof kSignature) != 0)
        return corrupt("super block: no blobstore signature");
    if (sb.crc != page_crc(&sb)) return corrupt("super block: bad crc");
    if (sb.version != kVersion)
        return corrupt(fmt::format("super block: unsupported version {} (this build reads {})",
                                   sb.version, kVersion));
    if (sb.md_page_size != kMdPageSize)
        return corrupt(fmt::format("super block: metadata page size {}", sb.md_page_size));
    if (sb.io_unit_size != block_size)
        return corrupt(fmt::format("super block: io unit {} but the bdev's block size is {}",
                                   sb.io_unit_size, block_size));
    if (sb.cluster_size < kMdPageSize || sb.cluster_size % kMdPageSize != 0)
        return corrupt(fmt::format("super block: bad cluster size {}", sb.cluster_size));
    if (sb.total_clusters == 0 || sb.total_clusters >= UINT32_MAX ||
        sb.total_clusters > bdev_bytes / sb.cluster_size)
        return corrupt(fmt::format("super block: {} clusters do not fit the bdev", sb.total_clusters));
    if (sb.md_len < 8 || sb.md_len > (1u << 30) || sb.max_blobs != sb.md_len / 4)
        return corrupt("super block: bad metadata region size");
    if (sb.max_clusters_per_blob == 0 || sb.max_clusters_per_blob > sb.total_clusters)
        return corrupt("super block: bad max_clusters_per_blob");
    Geometry g;
    g.io_unit_size = sb.io_unit_size;
    g.cluster_size = sb.cluster_size;
    g.total_clusters = sb.total_clusters;
    g.num_md_pages = static_cast<uint32_t>(sb.md_len);
    g.max_blobs = sb.max_blobs;
    g.max_clusters_per_blob = sb.max_clusters_per_blob;
    // The regions must be exactly where format puts them: anything else is damage.
    BsOptions o;
    o.cluster_sz = sb.cluster_size;
    o.num_md_pages = g.num_md_pages;
    o.max_clusters_per_blob = sb.max_clusters_per_blob;
    auto expect = compute_geometry(sb.total_clusters * uint64_t{sb.cluster_size}, block_size, o);
    if (!expect.ok()) return corrupt("super block: " + expect.error().message());
    if (expect->cluster_mask_start != sb.cluster_mask_start ||
        expect->cluster_mask_len != sb.cluster_mask_len ||
        expect->page_mask_start != sb.page_mask_start || expect->page_mask_len != sb.page_mask_len ||
        expect->blobid_mask_start != sb.blobid_mask_start ||
        expect->blobid_mask_len != sb.blobid_mask_len || expect->md_start != sb.md_start ||
        expect->md_len != sb.md_len)
        return corrupt("super block: region table does not match the geometry");
    g.cluster_mask_start = sb.cluster_mask_start;
    g.cluster_mask_len = sb.cluster_mask_len;
    g.page_mask_start = sb.page_mask_start;
    g.page_mask_len = sb.page_mask_len;
    g.blobid_mask_start = sb.blobid_mask_start;
    g.blobid_mask_len = sb.blobid_mask_len;
    g.md_start = sb.md_start;
    g.md_len = sb.md_len;
    g.first_data_cluster = expect->first_data_cluster;
    return g;
}

// ---- metadata pages ----------------------------------------------------------------------------

namespace {
// The descriptor stream of a blob, each one whole (a descriptor never spans pages).
std::vector<std::vector<uint8_t>> descriptors(const BlobMd& md) {
    std::vector<std::vector<uint8_t>> out;
    auto add = [&](uint8_t type, size_t len) -> uint8_t* {
        auto& d = out.emplace_back(kDescHeaderSize + len, 0);
        d[0] = type;
        store<uint16_t>(d.data() + 2, static_cast<uint16_t>(len));
        return d.data() + kDescHeaderSize;
    };
    InfoDesc info{md.clusters.size(), md.parent_id, md.flags, md.pending_op, md.pending_peer};
    store(add(kDescInfo, sizeof info), info);
    if (md.flags & kFlagExternal)
        std::memcpy(add(kDescExternal, md.external.size()), md.external.data(), md.external.size());
    for (const Xattr& x : md.xattrs) {
        uint8_t* p = add(kDescXattr, 4 + x.name.size() + x.value.size());
        store<uint16_t>(p, static_cast<uint16_t>(x.name.size()));
        store<uint16_t>(p + 2, static_cast<uint16_t>(x.value.size()));
        std::memcpy(p + 4, x.name.data(), x.name.size());
        if (!x.value.empty()) std::memcpy(p + 4 + x.name.size(), x.value.data(), x.value.size());
    }
    // Run-length extents: a run continues while the next cluster follows on (or both are holes).
    std::vector<ExtentRun> runs;
    for (uint32_t c : md.clusters) {
        if (!runs.empty()) {
            ExtentRun& r = runs.back();
            const bool hole = r.cluster == kUnallocated;
            if ((hole && c == kUnallocated) || (!hole && c != kUnallocated && c == r.cluster + r.count)) {
                ++r.count;
                continue;
            }
        }
        runs.push_back({c, 1});
    }
    uint64_t first = 0;
    for (size_t i = 0; i < runs.size(); i += kMaxRunsPerDesc) {
        const size_t n = std::min(kMaxRunsPerDesc, runs.size() - i);
        uint8_t* p = add(kDescExtent, 8 + n * sizeof(ExtentRun));
        store<uint64_t>(p, first);
        std::memcpy(p + 8, &runs[i], n * sizeof(ExtentRun));
        for (size_t j = 0; j < n; ++j) first += runs[i + j].count;
    }
    return out;
}

// Page assignment: greedy, in order.
std::vector<size_t> page_of(const std::vector<std::vector<uint8_t>>& descs) {
    std::vector<size_t> where;
    size_t page = 0, used = 0;
    for (const auto& d : descs) {
        if (used + d.size() > kMdDescBytes) {
            ++page;
            used = 0;
        }
        where.push_back(page);
        used += d.size();
    }
    return where;
}
}  // namespace

size_t encoded_pages(const BlobMd& md) {
    auto w = page_of(descriptors(md));
    return w.empty() ? 1 : w.back() + 1;
}

void encode(const BlobMd& md, std::span<const uint32_t> pages, uint8_t* out) {
    const auto descs = descriptors(md);
    const auto where = page_of(descs);
    const size_t n = where.empty() ? 1 : where.back() + 1;
    STRATA_ASSERT(pages.size() == n);
    std::memset(out, 0, n * kMdPageSize);
    std::vector<size_t> used(n, 0);
    for (size_t i = 0; i < n; ++i) {
        auto* pg = reinterpret_cast<MdPage*>(out + i * kMdPageSize);
        pg->blob_id = md.id;
        pg->generation = md.generation;
        pg->sequence = static_cast<uint32_t>(i);
        pg->next = i + 1 < n ? pages[i + 1] : kNoPage;
    }
    for (size_t k = 0; k < descs.size(); ++k) {
        auto* pg = reinterpret_cast<MdPage*>(out + where[k] * kMdPageSize);
        std::memcpy(pg->descriptors + used[where[k]], descs[k].data(), descs[k].size());
        used[where[k]] += descs[k].size();
    }
    for (size_t i = 0; i < n; ++i) seal_page(out + i * kMdPageSize);
}

Status check_page(const void* page, BlobId id, uint64_t generation, uint32_t sequence) noexcept {
    MdPage hdr;
    std::memcpy(&hdr, page, kMdHeaderSize);
    std::memcpy(&hdr.crc, static_cast<const uint8_t*>(page) + kMdPageSize - 4, 4);
    if (hdr.crc != page_crc(page)) return Status(Errc::corrupt, "metadata page: bad crc");
    if (hdr.blob_id != id) return Status(Errc::corrupt, "metadata page: belongs to another blob");
    if (hdr.sequence != sequence) return Status(Errc::corrupt, "metadata page: out of sequence");
    if (hdr.generation != generation)
        return Status(Errc::corrupt, "metadata page: from another generation");
    return {};
}

Result<BlobMd> decode(std::span<const uint8_t* const> pages, const Geometry& g) {
    BlobMd md;
    if (pages.empty()) return corrupt("metadata: empty chain");
    MdPage root_hdr;
    std::memcpy(&root_hdr, pages[0], kMdHeaderSize);
    md.id = root_hdr.blob_id;
    md.generation = root_hdr.generation;
    bool have_info = false;
    uint64_t num_clusters = 0;
    uint64_t next_extent = 0;
    std::unordered_set<std::string> names;
    for (size_t pi = 0; pi < pages.size(); ++pi) {
        const uint8_t* d = pages[pi] + kMdHeaderSize;
        size_t pos = 0;
        while (pos + kDescHeaderSize <= kMdDescBytes) {
            const uint8_t type = d[pos];
            if (type == kDescEnd) break;
            const size_t len = load<uint16_t>(d + pos + 2);
            if (pos + kDescHeaderSize + len > kMdDescBytes)
                return corrupt(fmt::format("metadata page {}: descriptor overruns the page", pi));
            const uint8_t* p = d + pos + kDescHeaderSize;
            switch (type) {
            case kDescInfo: {
                if (pi != 0 || have_info)
                    return corrupt("metadata: info descriptor missing from the root or repeated");
                if (len != sizeof(InfoDesc)) return corrupt("metadata: info descriptor size");
                const auto info = load<InfoDesc>(p);
                if (info.num_clusters > g.max_clusters_per_blob)
                    return corrupt(fmt::format("metadata: {} clusters exceed the limit {}",
                                               info.num_clusters, g.max_clusters_per_blob));
                if (info.flags & ~uint32_t{kFlagThin | kFlagReadOnly | kFlagSnapshot | kFlagDeleted | kFlagExternal})
                    return corrupt("metadata: unknown flags");
                if (info.pending_op > kPendingMergeInto)
                    return corrupt("metadata: unknown pending operation");
                if (info.parent_id != kInvalidBlobId &&
                    (blob_slot(info.parent_id, g.max_blobs) == UINT32_MAX || info.parent_id == md.id))
                    return corrupt("metadata: bad parent id");
                num_clusters = info.num_clusters;
                md.parent_id = info.parent_id;
                md.flags = info.flags;
                md.pending_op = info.pending_op;
                md.pending_peer = info.pending_peer;
                md.clusters.reserve(num_clusters);
                have_info = true;
                break;
            }
            case kDescExtent: {
                if (!have_info) return corrupt("metadata: extent before the info descriptor");
                if (len < 8 || (len - 8) % sizeof(ExtentRun) != 0)
                    return corrupt("metadata: extent descriptor size");
                if (load<uint64_t>(p) != next_extent)
                    return corrupt("metadata: extents not contiguous");
                for (size_t off = 8; off < len; off += sizeof(ExtentRun)) {
                    const auto run = load<ExtentRun>(p + off);
                    if (run.count == 0) return corrupt("metadata: empty extent run");
                    if (run.count > num_clusters - next_extent)
                        return corrupt("metadata: extents beyond the blob's size");
                    if (run.cluster != kUnallocated &&
                        (run.cluster < g.first_data_cluster ||
                         uint64_t{run.cluster} + run.count > g.total_clusters))
                        return corrupt(fmt::format("metadata: cluster run {}+{} out of range",
                                                   run.cluster, run.count));
                    for (uint32_t k = 0; k < run.count; ++k)
                        md.clusters.push_back(run.cluster == kUnallocated ? kUnallocated
                                                                          : run.cluster + k);
                    next_extent += run.count;
                }
                break;
            }
            case kDescXattr: {
                if (len < 4) return corrupt("metadata: xattr descriptor size");
                const size_t nl = load<uint16_t>(p), vl = load<uint16_t>(p + 2);
                if (nl == 0 || 4 + nl + vl != len) return corrupt("metadata: xattr lengths");
                Xattr x;
                x.name.assign(reinterpret_cast<const char*>(p + 4), nl);
                x.value.assign(p + 4 + nl, p + 4 + nl + vl);
                if (!names.insert(x.name).second)
                    return corrupt(fmt::format("metadata: xattr '{}' repeated", x.name));
                md.xattrs.push_back(std::move(x));
                break;
            }
            case kDescExternal:
                if (!have_info || !(md.flags & kFlagExternal) || !md.external.empty() || len == 0 ||
                    len > kMaxExternalName)
                    return corrupt("metadata: external snapshot descriptor");
                md.external.assign(reinterpret_cast<const char*>(p), len);
                break;
            default:
                return corrupt(fmt::format("metadata page {}: unknown descriptor type {}", pi, type));
            }
            pos += kDescHeaderSize + len;
        }
    }
    if (!have_info) return corrupt("metadata: no info descriptor");
    if ((md.flags & kFlagExternal) && (md.external.empty() || md.parent_id != kInvalidBlobId))
        return corrupt("metadata: external snapshot without a name, or with a parent blob");
    if (next_extent != num_clusters && !(md.flags & kFlagDeleted))
        return corrupt(fmt::format("metadata: extents cover {} of {} clusters", next_extent, num_clusters));
    md.clusters.resize(num_clusters, kUnallocated);
    return md;
}

// ---- bitmap ------------------------------------------------------------------------------------

uint64_t Bitmap::find_clear(uint64_t from, uint64_t to) const noexcept {
    to = std::min(to, bits_);
    for (uint64_t i = from; i < to;) {
        if ((i & 63) == 0 && i + 64 <= to) {
            uint64_t w;
            std::memcpy(&w, &bytes_[i >> 3], 8);
            if (w == ~uint64_t{0}) {
                i += 64;
                continue;
            }
            return i + std::countr_one(w);
        }
        if (!test(i)) return i;
        ++i;
    }
    return UINT64_MAX;
}

uint64_t Bitmap::count() const noexcept {
    uint64_t n = 0;
    for (uint8_t b : bytes_) n += std::popcount(b);
    return n;
}

bool Bitmap::tail_clear() const noexcept {
    for (uint64_t i = bits_; i < bytes_.size() * 8; ++i)
        if ((bytes_[i >> 3] >> (i & 7)) & 1) return false;
    return true;
}

}  // namespace strata::blob::format
