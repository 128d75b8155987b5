#include "cache/paged_kv_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "runtime/core/cuda_check.h"
#endif

namespace lr {

// ---- PinnedStaging ---------------------------------------------------------------------------------------

PinnedStaging::PinnedStaging(size_t bytes, bool pinned) : bytes_(bytes), pinned_(pinned) {
    if (!pinned) {
        plain_ = HostBuffer(bytes);
        data_ = plain_.data();
        return;
    }
#ifdef LONGROLL_HAS_CUDA
    if (bytes > 0) LR_CUDA_CHECK(cudaMallocHost(&data_, bytes));
    cudaEvent_t ev = nullptr;
    const cudaError_t err = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (err != cudaSuccess) {
        release();
        LR_CUDA_CHECK(err);
    }
    event_ = ev;
#else
    LR_RUNTIME(false, "this longroll was built without CUDA; pinned host memory is not available");
#endif
}

void PinnedStaging::release() noexcept {
#ifdef LONGROLL_HAS_CUDA
    if (pinned_ && data_) cudaFreeHost(data_);
    if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
#endif
    data_ = nullptr;
    event_ = nullptr;
    recorded_ = false;
}

PinnedStaging::~PinnedStaging() { release(); }

PinnedStaging::PinnedStaging(PinnedStaging&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)),
      pinned_(std::exchange(o.pinned_, false)),
      plain_(std::move(o.plain_)),
      event_(std::exchange(o.event_, nullptr)),
      recorded_(std::exchange(o.recorded_, false)) {}

PinnedStaging& PinnedStaging::operator=(PinnedStaging&& o) noexcept {
    if (this != &o) {
        release();
        data_ = std::exchange(o.data_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
        pinned_ = std::exchange(o.pinned_, false);
        plain_ = std::move(o.plain_);
        event_ = std::exchange(o.event_, nullptr);
        recorded_ = std::exchange(o.recorded_, false);
    }
    return *this;
}

void PinnedStaging::to_device(void* dst, size_t offset, size_t bytes, Stream stream) const {
    LR_ASSERT(pinned_ && offset + bytes <= bytes_, "staging upload of ", bytes, " bytes at ", offset, " from ", bytes_,
              pinned_ ? " pinned" : " plain", " bytes");
    if (bytes == 0) return;
#ifdef LONGROLL_HAS_CUDA
    LR_CUDA_CHECK(
        cudaMemcpyAsync(dst, static_cast<const char*>(data_) + offset, bytes, cudaMemcpyHostToDevice, stream));
#endif
}

void PinnedStaging::from_device(const void* src, size_t offset, size_t bytes, Stream stream) const {
    LR_ASSERT(pinned_ && offset + bytes <= bytes_, "staging download of ", bytes, " bytes at ", offset, " into ",
              bytes_, pinned_ ? " pinned" : " plain", " bytes");
    if (bytes == 0) return;
#ifdef LONGROLL_HAS_CUDA
    LR_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(data_) + offset, src, bytes, cudaMemcpyDeviceToHost, stream));
#endif
}

void PinnedStaging::record(Stream stream) {
    if (!pinned_) return;
#ifdef LONGROLL_HAS_CUDA
    LR_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), stream));
    recorded_ = true;
#endif
}

void PinnedStaging::wait() const {
    if (!pinned_ || !recorded_) return;
#ifdef LONGROLL_HAS_CUDA
    LR_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
#endif
}

// ---- PagedKvCache ----------------------------------------------------------------------------------------

namespace {

constexpr size_t kDeviceAlign = 256;

size_t align_up(size_t n) { return (n + kDeviceAlign - 1) / kDeviceAlign * kDeviceAlign; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

// Element counts (int32) of the table sections and byte sizes of the device buffer's parts. The staging and
// the device tables share one layout, at fixed offsets, so that every forward's device pointers are the same.
struct PagedKvCache::Layout {
    int64_t blocks_per_frame = 0;
    int64_t pool_blocks = 0;
    int64_t max_q_blocks = 0;
    // int32 offsets / counts of the tables
    int64_t dst_row = 0, indptr = 0, indices = 0, kv_rows = 0, table_ints = 0;
    // bytes of the device buffer's parts
    size_t pool = 0;   // one pool: [pool_blocks, block_size, width] bf16
    size_t pools = 0;  // every pool, each aligned
    size_t tables = 0;
    size_t block_len = 0;
    size_t total = 0;

    explicit Layout(const PagedKvCacheConfig& c) {
        blocks_per_frame = c.tile.rows > 0
                               ? TileLayout(c.tokens_per_frame / c.grid_cols, c.grid_cols, c.tile).tiles_per_frame()
                               : ceil_div(c.tokens_per_frame, c.block_size);
        pool_blocks = c.max_frames * blocks_per_frame + c.retained_blocks;
        max_q_blocks = ceil_div(c.max_write_frames * c.tokens_per_frame, c.q_block);
        dst_row = 0;
        indptr = dst_row + c.max_write_frames * c.tokens_per_frame;
        indices = indptr + max_q_blocks + 1;
        kv_rows = indices + max_q_blocks * pool_blocks;
        table_ints = kv_rows + c.max_frames * c.tokens_per_frame;
        pool = static_cast<size_t>(pool_blocks * c.block_size * c.width) * 2;
        pools = align_up(pool) * static_cast<size_t>(2 * c.num_layers + (c.rotated_keys ? 1 : 0));
        tables = align_up(static_cast<size_t>(table_ints) * sizeof(int32_t));
        block_len =
            align_up(static_cast<size_t>(pool_blocks * (c.retained_blocks > 0 ? c.heads : 1)) * sizeof(int32_t));
        total = pools + tables + block_len;
    }
};

namespace {

// The config with max_frames raised to the window (KvWindow validates the frame numbers), checked.
PagedKvCacheConfig checked(PagedKvCacheConfig c) {
    LR_CHECK(c.num_layers > 0 && c.tokens_per_frame > 0 && c.width > 0, "paged KV cache: layers (", c.num_layers,
             "), tokens per frame (", c.tokens_per_frame, ") and width (", c.width, ") must be positive");
    LR_CHECK(c.block_size > 0 && c.q_block > 0 && c.max_write_frames > 0, "paged KV cache: block size (", c.block_size,
             "), query block (", c.q_block, ") and largest write (", c.max_write_frames, " frames) must be positive");
    c.max_frames = KvWindow(c.window_frames, c.sink_frames, c.max_frames).max_frames();
    if (c.tile.rows > 0) {
        LR_CHECK(c.grid_cols > 0 && c.tokens_per_frame % c.grid_cols == 0 && c.tile.rows * c.tile.cols <= c.block_size,
                 "paged KV cache: tiles of ", c.tile.rows, "x", c.tile.cols, " over ", c.tokens_per_frame,
                 " tokens per frame in rows of ", c.grid_cols, " do not fit blocks of ", c.block_size);
    }
    LR_CHECK(c.retained_blocks >= 0 && c.heads > 0, "paged KV cache: retained blocks ", c.retained_blocks, ", heads ",
             c.heads);
    LR_CHECK(c.max_write_frames <= c.max_frames, "paged KV cache: a forward of ", c.max_write_frames,
             " frames cannot fit ", c.max_frames, " frames of storage");
    // Rows, block ids and table offsets are int32 in the kernels' tables.
    const int64_t bpf = c.tile.rows > 0
                            ? TileLayout(c.tokens_per_frame / c.grid_cols, c.grid_cols, c.tile).tiles_per_frame()
                            : ceil_div(c.tokens_per_frame, c.block_size);
    const int64_t rows = (c.max_frames * bpf + c.retained_blocks) * c.block_size;
    const int64_t table = ceil_div(c.max_write_frames * c.tokens_per_frame, c.q_block) * c.max_frames * bpf;
    constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
    LR_CHECK(rows < kMax && table < kMax, "paged KV cache: ", c.max_frames, " frames of ", c.tokens_per_frame,
             " tokens (", rows, " rows, a block table of ", table,
             " entries) exceed the int32 tables; plan fewer frames (rollout.local_attn_size)");
    return c;
}

}  // namespace

size_t PagedKvCache::pool_bytes(const PagedKvCacheConfig& cfg) { return Layout(checked(cfg)).pools; }

size_t PagedKvCache::device_bytes(const PagedKvCacheConfig& cfg) { return Layout(checked(cfg)).total; }

PagedKvCache::PagedKvCache(const PagedKvCacheConfig& cfg, Device device) : cfg_(checked(cfg)), device_(device) {
    window_ = KvWindow(cfg_.window_frames, cfg_.sink_frames, cfg_.max_frames);
    const Layout lay(cfg_);
    blocks_per_frame_ = lay.blocks_per_frame;
    pool_stride_ = align_up(lay.pool);
    if (tiled()) tiles_ = TileLayout(cfg_.tokens_per_frame / cfg_.grid_cols, cfg_.grid_cols, cfg_.tile);
    const int64_t lh = block_len_heads();
    block_len_.assign(static_cast<size_t>(lay.pool_blocks * lh), 0);  // retained blocks start empty
    const int64_t last = cfg_.tokens_per_frame - (blocks_per_frame_ - 1) * cfg_.block_size;
    for (int64_t b = 0; b < cfg_.max_frames * blocks_per_frame_; ++b) {
        const int64_t t = b % blocks_per_frame_;
        const int64_t len = tiled() ? tiles_.tile_len(t) : (t == blocks_per_frame_ - 1 ? last : cfg_.block_size);
        for (int64_t h = 0; h < lh; ++h) block_len_[static_cast<size_t>(b * lh + h)] = static_cast<int32_t>(len);
    }
    slot_page_.reserve(static_cast<size_t>(cfg_.max_frames));
    free_pages_.reserve(static_cast<size_t>(cfg_.max_frames));
    staging_ = PinnedStaging(static_cast<size_t>(lay.table_ints) * sizeof(int32_t), device == Device::kCuda);
    if (device == Device::kCuda) {
#ifdef LONGROLL_HAS_CUDA
        DeviceBuffer buf(lay.total);
        char* base = static_cast<char*>(buf.data());
        dev_pools_ = base;
        dev_tables_ = reinterpret_cast<int32_t*>(base + lay.pools);
        dev_block_len_ = reinterpret_cast<int32_t*>(base + lay.pools + lay.tables);
        // Zero pools: padding rows are never written and a masked score times a garbage (NaN) value is NaN.
        LR_CUDA_CHECK(cudaMemset(base, 0, lay.total));
        LR_CUDA_CHECK(
            cudaMemcpy(dev_block_len_, block_len_.data(), block_len_.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
        // Both ran on the legacy default stream, which the caller's (non-blocking) stream does not wait for.
        LR_CUDA_CHECK(cudaDeviceSynchronize());
        device_buffer_ = std::move(buf);
#else
        LR_RUNTIME(false, "paged KV cache: this longroll was built without CUDA");
#endif
    }
    reset(0);
}

PagedKvCache::~PagedKvCache() = default;

void PagedKvCache::reset(int64_t first_frame) {
    window_.reset(first_frame);
    slot_page_.clear();
    free_pages_.clear();
    for (int64_t p = cfg_.max_frames - 1; p >= 0; --p) free_pages_.push_back(p);
    // Retained blocks are empty again: a block kept by the previous run must not be read by the next one. The
    // device copy follows with the next upload() (stream-ordered after the previous run's kernels).
    const auto first_retained = static_cast<size_t>(retained_block(0) * block_len_heads());
    for (size_t i = first_retained; i < block_len_.size(); ++i) {
        block_len_dirty_ = block_len_dirty_ || block_len_[i] != 0;
        block_len_[i] = 0;
    }
}

int64_t PagedKvCache::page_row(int64_t page, int64_t i) const {
    const int64_t B = cfg_.block_size;
    if (!tiled()) return page * blocks_per_frame_ * B + i;
    const int64_t t = tiles_.to_tiled(i), tile = tiles_.tile_of_tiled(t);
    return (page * blocks_per_frame_ + tile) * B + (t - tiles_.tile_start(tile));
}

void PagedKvCache::set_retained_len(int64_t r, int64_t head, int32_t len) {
    LR_ASSERT(
        r >= 0 && r < cfg_.retained_blocks && head >= 0 && head < cfg_.heads && len >= 0 && len <= cfg_.block_size,
        "paged KV cache: retained block ", r, " head ", head, " length ", len);
    block_len_[static_cast<size_t>(retained_block(r) * cfg_.heads + head)] = len;
}

void PagedKvCache::upload_block_len(Stream stream) {
    LR_ASSERT(on_device(), "paged KV cache: upload_block_len() without a device");
    block_len_dirty_ = false;
#ifdef LONGROLL_HAS_CUDA
    // Pageable source: the copy is staged before the call returns, so block_len_ may change right after.
    LR_CUDA_CHECK(cudaMemcpyAsync(dev_block_len_, block_len_.data(), block_len_.size() * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)));
#else
    (void)stream;
#endif
}

int64_t PagedKvCache::take_page() {
    LR_ASSERT(!free_pages_.empty(), "paged KV cache: no free page for ", slot_page_.size(), " slots of ",
              cfg_.max_frames);
    const int64_t p = free_pages_.back();
    free_pages_.pop_back();
    return p;
}

KvWrite PagedKvCache::plan(int64_t start_frame, int64_t num_frames, bool protect_sink) const {
    return window_.plan(start_frame, num_frames, protect_sink);
}

const PagedKvPlan& PagedKvCache::write(int64_t start_frame, int64_t num_frames, bool protect_sink) {
    LR_CHECK(num_frames <= cfg_.max_write_frames, "paged KV cache: a forward of ", num_frames,
             " frames; the tables were planned for at most ", cfg_.max_write_frames);
    const KvWrite w = window_.plan(start_frame, num_frames, protect_sink);

    // Pages follow KvWindow::commit: evicted slots give their pages back, new slots take fresh ones, and a write
    // that is not a recompute ends the window at slot_end.
    if (w.evict_frames > 0) {
        const auto first = slot_page_.begin() + cfg_.sink_frames;
        for (auto it = first; it != first + w.evict_frames; ++it) free_pages_.push_back(*it);
        slot_page_.erase(first, first + w.evict_frames);
    }
    while (static_cast<int64_t>(slot_page_.size()) < w.slot_end) slot_page_.push_back(take_page());
    window_.commit(w);
    while (static_cast<int64_t>(slot_page_.size()) > window_.frames()) {
        free_pages_.push_back(slot_page_.back());
        slot_page_.pop_back();
    }
    LR_ASSERT(static_cast<int64_t>(slot_page_.size()) == window_.frames(), "paged KV cache: ", slot_page_.size(),
              " pages for ", window_.frames(), " slots");

    // Host tables. The previous upload must have left the staging before it is refilled.
    staging_.wait();
    const Layout lay(cfg_);
    const int64_t tpf = cfg_.tokens_per_frame, bpf = blocks_per_frame_;
    int32_t* base = static_cast<int32_t*>(staging_.data());
    PagedKvPlan& p = plan_;
    p.write = w;
    p.q_len = num_frames * tpf;
    p.num_q_blocks = ceil_div(p.q_len, cfg_.q_block);
    p.num_kv_blocks = w.slot_end * bpf;
    p.kv_tokens = w.slot_end * tpf;
    int32_t* dst_row = base + lay.dst_row;
    for (int64_t f = 0; f < num_frames; ++f) {
        const int64_t slot = w.slot_begin + f;
        const int64_t page = slot_page_[static_cast<size_t>(slot)];
        for (int64_t i = 0; i < tpf; ++i)
            dst_row[f * tpf + i] = slot < w.write_begin ? -1 : static_cast<int32_t>(page_row(page, i));
    }
    int32_t* indptr = base + lay.indptr;
    int32_t* indices = base + lay.indices;
    for (int64_t qb = 0; qb <= p.num_q_blocks; ++qb) indptr[qb] = static_cast<int32_t>(qb * p.num_kv_blocks);
    for (int64_t s = 0; s < w.slot_end; ++s) {
        for (int64_t j = 0; j < bpf; ++j)
            indices[s * bpf + j] = static_cast<int32_t>(slot_page_[static_cast<size_t>(s)] * bpf + j);
    }
    for (int64_t qb = 1; qb < p.num_q_blocks; ++qb)
        std::copy_n(indices, p.num_kv_blocks, indices + qb * p.num_kv_blocks);
    int32_t* kv_rows = base + lay.kv_rows;
    for (int64_t s = 0; s < w.slot_end; ++s) {
        const int64_t page = slot_page_[static_cast<size_t>(s)];
        for (int64_t i = 0; i < tpf; ++i) kv_rows[s * tpf + i] = static_cast<int32_t>(page_row(page, i));
    }
    p.host = {dst_row, indptr, indices, block_len_.data(), kv_rows};
    if (on_device()) {
        p.device = {dev_tables_ + lay.dst_row, dev_tables_ + lay.indptr, dev_tables_ + lay.indices, dev_block_len_,
                    dev_tables_ + lay.kv_rows};
    }
    return p;
}

void PagedKvCache::upload(Stream stream) {
    LR_ASSERT(on_device(), "paged KV cache: upload() without a device");
    const Layout lay(cfg_);
    const PagedKvPlan& p = plan_;
    const auto copy = [&](int64_t offset, int64_t count) {
        staging_.to_device(dev_tables_ + offset, static_cast<size_t>(offset) * sizeof(int32_t),
                           static_cast<size_t>(count) * sizeof(int32_t), stream);
    };
    copy(lay.dst_row, p.q_len);
    copy(lay.indptr, p.num_q_blocks + 1);
    copy(lay.indices, p.num_q_blocks * p.num_kv_blocks);
    copy(lay.kv_rows, p.kv_tokens);
    staging_.record(stream);
    if (block_len_dirty_) upload_block_len(stream);
}

void* PagedKvCache::keys(int64_t layer) const {
    LR_ASSERT(on_device() && layer >= 0 && layer < cfg_.num_layers, "paged KV cache: keys of layer ", layer);
    return dev_pools_ + pool_stride_ * static_cast<size_t>(2 * layer);
}

void* PagedKvCache::values(int64_t layer) const {
    LR_ASSERT(on_device() && layer >= 0 && layer < cfg_.num_layers, "paged KV cache: values of layer ", layer);
    return dev_pools_ + pool_stride_ * static_cast<size_t>(2 * layer + 1);
}

void* PagedKvCache::rotated_keys() const {
    LR_ASSERT(on_device() && cfg_.rotated_keys, "paged KV cache: no rotated-key pool was planned");
    return dev_pools_ + pool_stride_ * static_cast<size_t>(2 * cfg_.num_layers);
}

}  // namespace lr
