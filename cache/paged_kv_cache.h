// The block-paged KV cache of the GPU path (DESIGN.md section 6): the frame/slot semantics of KvCache (the
// same KvWindow bookkeeping: window, sink, eviction of the oldest frames after the sink, in-place rewrites,
// LongLive's protected-sink re-cache), with K and V stored per layer in a pool of physical blocks.
//
//   pool (per layer, K and V): bf16 [pool_blocks, block_size, width]
//   a frame occupies one page: blocks_per_frame = ceil(tokens_per_frame / block_size) consecutive blocks, the
//   last one short when tokens_per_frame is not a multiple of block_size (block_len says how many tokens are
//   valid; the padding rows stay zero and the attention kernel masks them)
//   slot -> page is a host-side map; eviction returns pages to a free list and moves no data
//
// Pages, not single blocks, are the unit of allocation so that a physical block's valid length never changes
// (block_len is uploaded once). Per forward, write() moves the bookkeeping past the write and fills the
// tables the kernels read, in host memory (pinned with a device): where each token of the chunk goes
// (dst_row), the dense CSR block table of the window (every block of slots [0, slot_end) for every 128-query
// block of the chunk), and the physical row of every cached token (window-relative RoPE re-rotates them).
// upload() copies them into device buffers planned at construction: nothing allocates after that.
//
// The bookkeeping runs without a device (Device::kCpu: host tables only), which is how tests/unit/cache
// checks it against KvCache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/tile_layout.h"
#include "runtime/core/stream.h"
#include "runtime/core/tensor.h"

namespace lr {

// Host memory feeding asynchronous copies to or from the device: pinned (cudaMallocHost) when `pinned`,
// plain otherwise. A copy from pinned memory runs when the stream reaches it, so memory that feeds an upload
// must not be refilled before that: wait() blocks until the copies enqueued before the last record() are done.
// Refilling staging for the next forward therefore calls wait() first; the previous forward's upload has
// normally finished long before.
class PinnedStaging {
  public:
    PinnedStaging() = default;
    PinnedStaging(size_t bytes, bool pinned);
    ~PinnedStaging();
    PinnedStaging(PinnedStaging&& o) noexcept;
    PinnedStaging& operator=(PinnedStaging&& o) noexcept;
    PinnedStaging(const PinnedStaging&) = delete;
    PinnedStaging& operator=(const PinnedStaging&) = delete;

    void* data() const { return data_; }
    size_t size() const { return bytes_; }
    bool pinned() const { return pinned_; }
    // Enqueue copies between data() + offset and device memory on `stream` (pinned staging only).
    void to_device(void* dst, size_t offset, size_t bytes, Stream stream) const;
    void from_device(const void* src, size_t offset, size_t bytes, Stream stream) const;
    // Marks the copies enqueued so far; wait() blocks until they are done. No-ops for plain memory.
    void record(Stream stream);
    void wait() const;

  private:
    void release() noexcept;

    void* data_ = nullptr;
    size_t bytes_ = 0;
    bool pinned_ = false;
    HostBuffer plain_;
    void* event_ = nullptr;  // cudaEvent_t of the last record()
    bool recorded_ = false;
};

struct PagedKvCacheConfig {
    int64_t num_layers = 0;
    int64_t tokens_per_frame = 0;
    int64_t width = 0;           // bf16 elements per token in K and in V: heads * head_dim
    int64_t window_frames = -1;  // as KvCacheConfig: frames kept, current chunk included; -1 = never evict
    int64_t sink_frames = 0;
    int64_t max_frames = 0;        // pages: >= window_frames; the run's length when window_frames = -1
    int64_t block_size = 128;      // tokens per physical block
    int64_t max_write_frames = 3;  // frames of the largest forward: sizes dst_row and the block table
    int64_t q_block = 128;         // query rows per block-table row (the attention kernel's)
    bool rotated_keys = false;     // also one pool (shared by the layers) for re-rotated keys (window-relative RoPE)
    // Tile mode (the sparse attention step): a frame of tokens_per_frame = grid_rows x grid_cols patches is stored
    // tile by tile (cache/tile_layout.h), one physical block per tile (tile.rows * tile.cols <= block_size); the
    // chunk's tokens keep the model's raster order and dst_row / kv_rows map them into their tiles. tile.rows 0:
    // blocks are raster strips of block_size tokens (the dense path).
    TileShape tile{};
    int64_t grid_cols = 0;
    // Retained blocks after the frame pages (physical blocks max_frames * blocks_per_frame + r): blocks kept
    // outside the window, a different tile per head, so block_len is then per (block, head).
    int64_t retained_blocks = 0;
    int64_t heads = 1;  // of a token row (width / head_dim): block_len's second dimension with retained blocks
};

// The per-forward tables: every pointer is host memory in `PagedKvPlan::host` and its device copy in
// `PagedKvPlan::device` (after upload(); null without a device).
struct PagedKvTables {
    const int32_t* dst_row = nullptr;    // [q_len] physical row (block * block_size + offset) of each token of
                                         // the forward; -1 for the rows of a protected sink (not written)
    const int32_t* indptr = nullptr;     // [num_q_blocks + 1] CSR rows (table_heads = 1)
    const int32_t* indices = nullptr;    // [num_q_blocks * num_kv_blocks] physical blocks, slot order
    const int32_t* block_len = nullptr;  // [pool_blocks * block_len_heads()] valid tokens of each physical block
    const int32_t* kv_rows = nullptr;    // [kv_tokens] physical row of every token of slots [0, slot_end)
};

struct PagedKvPlan {
    KvWrite write;
    int64_t q_len = 0;          // tokens of the forward: num_frames * tokens_per_frame
    int64_t num_q_blocks = 0;   // ceil(q_len / q_block)
    int64_t num_kv_blocks = 0;  // blocks every query block reads: slot_end * blocks_per_frame
    int64_t kv_tokens = 0;      // slot_end * tokens_per_frame
    PagedKvTables host;
    PagedKvTables device;
};

class PagedKvCache {
  public:
    // Device::kCuda allocates the pools (zeroed), the device tables and pinned staging now, in one device
    // buffer of device_bytes(cfg); Device::kCpu keeps only the bookkeeping and host tables. InputError for a
    // bad config; RuntimeError for kCuda in a build without CUDA.
    explicit PagedKvCache(const PagedKvCacheConfig& cfg, Device device = Device::kCpu);
    ~PagedKvCache();
    PagedKvCache(const PagedKvCache&) = delete;
    PagedKvCache& operator=(const PagedKvCache&) = delete;

    const PagedKvCacheConfig& config() const { return cfg_; }  // max_frames raised to the window
    int64_t blocks_per_frame() const { return blocks_per_frame_; }
    int64_t pool_blocks() const { return cfg_.max_frames * blocks_per_frame_ + cfg_.retained_blocks; }
    bool tiled() const { return cfg_.tile.rows > 0; }
    const TileLayout& tiles() const { return tiles_; }  // tile mode only
    // Physical block of retained slot r, and its length for each head (0: empty). set_retained_len changes the
    // host copy; upload_block_len() sends it (stream-ordered). reset() empties every retained block (the next
    // upload() sends that).
    int64_t retained_block(int64_t r) const { return cfg_.max_frames * blocks_per_frame_ + r; }
    int64_t block_len_heads() const { return cfg_.retained_blocks > 0 ? cfg_.heads : 1; }
    void set_retained_len(int64_t r, int64_t head, int32_t len);
    void upload_block_len(Stream stream);
    // Physical row of token i (raster order) of a frame stored in page `page`.
    int64_t page_row(int64_t page, int64_t i) const;
    bool on_device() const { return device_ == Device::kCuda; }

    // As KvCache::plan: where a write of these frames lands; InputError if it cannot fit.
    KvWrite plan(int64_t start_frame, int64_t num_frames, bool protect_sink = false) const;
    // Plans the write, moves the bookkeeping past it (evicted pages freed, pages for new slots taken, indices
    // and slot map as KvCache::commit) and fills the host tables for it. The result stays valid until the next
    // write(); call upload() before launching the kernels that read the device tables.
    const PagedKvPlan& write(int64_t start_frame, int64_t num_frames, bool protect_sink = false);
    void upload(Stream stream);
    const PagedKvPlan& last_plan() const { return plan_; }

    int64_t frames() const { return window_.frames(); }
    int64_t end_frame() const { return window_.end_frame(); }
    const std::vector<int64_t>& slot_frames() const { return window_.slot_frames(); }
    // The page of each slot in use (its blocks are page * blocks_per_frame + [0, blocks_per_frame)).
    const std::vector<int64_t>& slot_pages() const { return slot_page_; }
    // Forgets everything, retained blocks included: a new run whose first frame is `first_frame`.
    void reset(int64_t first_frame = 0);

    // Device pools (kCuda): bf16 [pool_blocks, block_size, width].
    void* keys(int64_t layer) const;
    void* values(int64_t layer) const;
    void* rotated_keys() const;  // config().rotated_keys only
    // block_len of every physical block, on the device (uploaded once).
    const int32_t* device_block_len() const { return dev_block_len_; }

    // K and V pools of every layer (plus the rotated-key pool).
    static size_t pool_bytes(const PagedKvCacheConfig& cfg);
    // Everything the device buffer holds: pools and tables (what a Device::kCuda cache allocates).
    static size_t device_bytes(const PagedKvCacheConfig& cfg);
    size_t bytes() const { return pool_bytes(cfg_); }

  private:
    struct Layout;
    int64_t take_page();

    PagedKvCacheConfig cfg_;
    Device device_ = Device::kCpu;
    int64_t blocks_per_frame_ = 0;
    KvWindow window_;
    std::vector<int64_t> slot_page_;
    std::vector<int64_t> free_pages_;  // a stack: the lowest page is taken first after a reset
    std::vector<int32_t> block_len_;   // [pool_blocks * block_len_heads()]
    bool block_len_dirty_ = false;     // the host copy changed since the device's (reset emptied retained blocks)
    TileLayout tiles_;
    PinnedStaging staging_;  // dst_row | indptr | indices | kv_rows (int32), fixed offsets
    DeviceBuffer device_buffer_;
    size_t pool_stride_ = 0;         // bytes between pools
    int32_t* dev_tables_ = nullptr;  // the same layout as staging_
    int32_t* dev_block_len_ = nullptr;
    char* dev_pools_ = nullptr;
    PagedKvPlan plan_;
};

}  // namespace lr
