// CudaLocalAttentionStep: the single-GPU attention step (attention_step_cuda.h). The plan (which buffers, how
// large) is plain arithmetic and answers in CPU-only builds too; the rest needs the CUDA runtime.
#include "runtime/model/attention_step_cuda.h"

#include <algorithm>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/model/attention_step_cuda_impl.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/dit_ops_cuda.h"
#include "kernels/paged_attention.h"
#include "runtime/core/cuda_check.h"
#endif

namespace lr {

bool cuda_sparse_step(const CudaAttentionStepConfig& c) {
    return c.policy.kind != BlockPolicyKind::kDense && c.policy.kind != BlockPolicyKind::kSinkWindow;
}

std::unique_ptr<BlockPolicy> make_cuda_policy(const CudaAttentionStepConfig& c) {
    const TileLayout t(c.grid_rows, c.grid_cols, tile_shape_for_block(c.block_size));
    BlockPolicyGeometry g;
    g.num_layers = c.num_layers;
    g.num_heads = c.num_heads;
    g.tiles_per_frame = t.tiles_per_frame();
    g.frames_per_chunk = c.frames_per_chunk;
    g.window_frames = c.window_frames;
    g.sink_frames = c.sink_frames;
    g.max_frames = c.max_frames;
    g.run_frames = c.run_frames;
    return make_block_policy(c.policy, g);
}

PagedKvCacheConfig paged_config_of(const CudaAttentionStepConfig& c) {
    PagedKvCacheConfig k;
    k.num_layers = c.num_layers;
    k.tokens_per_frame = c.grid_rows * c.grid_cols;
    k.width = c.num_heads * c.head_dim;
    k.window_frames = c.window_frames;
    k.sink_frames = c.sink_frames;
    k.max_frames = c.max_frames;
    k.block_size = c.block_size;
    k.max_write_frames = c.max_write_frames;
    k.q_block = kCudaQBlock;
    k.rotated_keys = c.rope == RopePositions::kWindowRelative;
    if (cuda_sparse_step(c)) {
        const auto policy = make_cuda_policy(c);
        k.window_frames = policy->page_window_frames();  // Forcing-KV: sink + ring + chunk
        if (k.window_frames != -1) k.max_frames = k.window_frames;
        k.tile = tile_shape_for_block(c.block_size);
        k.grid_cols = c.grid_cols;
        k.retained_blocks = policy->max_retained();
        k.heads = c.num_heads;
    }
    return k;
}

namespace cuda_step {

size_t SparseSizes::bytes() const {
    return align_up(static_cast<size_t>(kmean) * 4) + align_up(static_cast<size_t>(change) * 4) +
           align_up(static_cast<size_t>(qmean) * 4) + align_up(static_cast<size_t>(indices) * 4) +
           align_up(static_cast<size_t>(scores) * 4) + align_up(static_cast<size_t>(staging_ints) * 4);
}

SparseSizes sparse_sizes(const CudaAttentionStepConfig& c) {
    SparseSizes z;
    if (!cuda_sparse_step(c)) return z;
    const PagedKvCacheConfig kc = paged_config_of(c);
    const int64_t max_frames = KvWindow(kc.window_frames, kc.sink_frames, kc.max_frames).max_frames();
    const TileLayout t(c.grid_rows, c.grid_cols, kc.tile);
    z.layers = c.num_layers;
    z.heads = c.num_heads;
    z.head_dim = c.head_dim;
    z.tiles = t.tiles_per_frame();
    z.frames = max_frames;
    z.window_blocks = max_frames * z.tiles;
    z.retained = kc.retained_blocks;
    z.pool_blocks = z.window_blocks + z.retained;
    z.max_q_blocks = ceil_div(c.max_write_frames * t.tokens_per_frame(), kCudaQBlock);
    z.row_cap = z.window_blocks + z.retained;
    z.kmean = z.layers * z.pool_blocks * z.heads * z.head_dim;
    z.change = z.layers * z.pool_blocks * z.heads;
    z.qmean = z.layers * z.heads * z.max_q_blocks * z.head_dim;
    z.indices = z.heads * z.max_q_blocks * z.row_cap;
    z.scores = z.layers * z.pool_blocks * z.heads;
    // q_perm, candidates (block, group, kind, competes), per layer extras and indptr, write/query segments,
    // retention entries (copy 4, change 3, salience 2 ints each).
    const int64_t F = c.max_write_frames, L = z.layers, H = z.heads;
    z.staging_ints = F * t.tokens_per_frame() + 4 * z.window_blocks + L * (H + 1) + L * H * z.retained +
                     L * (H * z.max_q_blocks + 1) + 2 * F * z.tiles + 2 * z.max_q_blocks + L * H * z.window_blocks * 4 +
                     L * F * z.tiles * 3 + L * z.pool_blocks * 2;
    // Window-relative RoPE: the retained slots' tiles per (layer, head), and the tiles' raster index per token.
    if (c.rope == RopePositions::kWindowRelative) z.staging_ints += L * H * z.retained + z.tiles * c.block_size;
    return z;
}

int64_t scratch_rows(const CudaAttentionStepConfig& c) {
    return ceil_div(c.max_write_frames * c.grid_rows * c.grid_cols, kCudaQBlock) * kCudaQBlock;
}

// q | out (tiled, sparse step only) | slot positions (window-relative RoPE only), each 256-byte aligned.
size_t scratch_bytes(const CudaAttentionStepConfig& c) {
    const size_t rows = static_cast<size_t>(scratch_rows(c)), width = static_cast<size_t>(c.num_heads * c.head_dim);
    size_t b = align_up(rows * width * 2);
    if (cuda_sparse_step(c)) b += align_up(rows * width * 2);
    if (c.rope == RopePositions::kWindowRelative) {
        const PagedKvCacheConfig kc = paged_config_of(c);
        const int64_t frames = KvWindow(kc.window_frames, kc.sink_frames, kc.max_frames).max_frames();
        b += align_up(static_cast<size_t>(3 * frames * c.grid_rows * c.grid_cols) * 4);
    }
    return b;
}

}  // namespace cuda_step

void CudaLocalAttentionStep::check(const CudaAttentionStepConfig& c) {
    LR_CHECK(c.num_layers > 0 && c.num_heads > 0 && c.head_dim > 0 && c.grid_rows > 0 && c.grid_cols > 0,
             "CUDA attention step: num_layers (", c.num_layers, "), num_heads (", c.num_heads, "), head_dim (",
             c.head_dim, ") and the patch grid (", c.grid_rows, "x", c.grid_cols, ") must be positive");
    LR_CHECK(c.head_dim % 2 == 0 && c.head_dim <= 256, "CUDA attention step: head_dim ", c.head_dim,
             " must be even and at most 256 (the attention kernel's range)");
    LR_CHECK(c.block_size > 0 && (c.head_dim != 128 || c.block_size % 64 == 0), "CUDA attention step: block_size ",
             c.block_size, " must be positive (a multiple of 64 with head_dim 128)");
    LR_CHECK(c.max_write_frames > 0, "CUDA attention step: max_write_frames must be positive, found ",
             c.max_write_frames);
}

size_t CudaLocalAttentionStep::device_bytes(const CudaAttentionStepConfig& c) {
    check(c);
    return PagedKvCache::device_bytes(paged_config_of(c)) + cuda_step::sparse_sizes(c).bytes() +
           cuda_step::scratch_bytes(c);
}

#ifdef LONGROLL_HAS_CUDA

CudaLocalAttentionStep::Impl::Impl(const CudaAttentionStepConfig& c) : cfg(c) {
    tpf = c.grid_rows * c.grid_cols;
    width = c.num_heads * c.head_dim;
    cache = std::make_unique<PagedKvCache>(paged_config_of(c), Device::kCuda);
    // Zeroed: rows past a forward's tokens are read (never used) by whole-tile kernels.
    scratch = DeviceBuffer(cuda_step::scratch_bytes(c));
    LR_CUDA_CHECK(cudaMemset(scratch.data(), 0, scratch.size()));
    const size_t rows = static_cast<size_t>(cuda_step::scratch_rows(c));
    char* p = static_cast<char*>(scratch.data());
    q = p;
    p += cuda_step::align_up(rows * static_cast<size_t>(width) * 2);
    if (cuda_sparse_step(c)) {
        out_tiled = p;
        p += cuda_step::align_up(rows * static_cast<size_t>(width) * 2);
    }
    if (c.rope == RopePositions::kWindowRelative) {
        // The (slot, row, col) of every cache row: window-relative RoPE rotates a cached key by its slot.
        slot_positions = reinterpret_cast<int32_t*>(p);
        const int64_t n = cache->config().max_frames * tpf;
        std::vector<int32_t> pos(static_cast<size_t>(3 * n));
        for (int64_t r = 0; r < n; ++r) {
            const int64_t i = r % tpf;
            pos[static_cast<size_t>(3 * r)] = static_cast<int32_t>(r / tpf);
            pos[static_cast<size_t>(3 * r + 1)] = static_cast<int32_t>(i / c.grid_cols);
            pos[static_cast<size_t>(3 * r + 2)] = static_cast<int32_t>(i % c.grid_cols);
        }
        LR_CUDA_CHECK(cudaMemcpy(slot_positions, pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
    }
    if (cuda_sparse_step(c)) init_sparse();
}

const void* CudaLocalAttentionStep::Impl::rotated_keys(int64_t l) {
    // Every cached key of the window (the chunk's included) rotated by its slot, into the rotated pool at the same
    // rows, so that the block tables read it unchanged. In tile mode kv_rows lists each slot's tokens in raster
    // order too, so the slot positions are the same.
    NormRopeParams p;
    p.x = cache->keys(l);
    p.x_dtype = DType::kBF16;
    p.src_row = plan->device.kv_rows;
    p.y = cache->rotated_keys();
    p.dst_row = plan->device.kv_rows;
    p.positions = slot_positions;
    p.rows = plan->kv_tokens;
    p.heads = cfg.num_heads;
    p.head_dim = cfg.head_dim;
    launch_norm_rope(p, stream);
    if (sp.on && sp.z.retained > 0) {
        // A retained block is attended at frame position 0, the window's first slot (CpuAttentionStep's rule), each
        // head's slice at its own tile's positions.
        RopeRetainedParams r;
        r.x = cache->keys(l);
        r.y = cache->rotated_keys();
        r.first_block = cache->retained_block(0);
        r.slots = sp.z.retained;
        r.block_size = cfg.block_size;
        r.slot_tile = sp.device(sp.o_ret_tile) + l * sp.z.heads * sp.z.retained;
        r.tile_raster = sp.device(sp.o_tile_raster);
        r.grid_cols = cfg.grid_cols;
        r.heads = cfg.num_heads;
        r.head_dim = cfg.head_dim;
        launch_rope_retained(r, stream);
    }
    return cache->rotated_keys();
}

CudaLocalAttentionStep::CudaLocalAttentionStep(const CudaAttentionStepConfig& cfg) : cfg_(cfg) {
    check(cfg);
    impl_ = std::make_unique<Impl>(cfg);
    // The zeroing and the synchronous uploads ran on the legacy default stream, which the model's non-blocking
    // stream does not wait for.
    LR_CUDA_CHECK(cudaDeviceSynchronize());
}

// The forward's stream is the model's: the model drains it before the step goes (it owns the step, or must not
// outlive it).
CudaLocalAttentionStep::~CudaLocalAttentionStep() = default;

KvWrite CudaLocalAttentionStep::begin(const AttentionForward& f, Stream stream) {
    Impl& m = *impl_;
    LR_CHECK(f.num_frames > 0 && f.num_frames <= cfg_.max_write_frames && f.start_frame >= 0,
             "CUDA attention step: a forward of ", f.num_frames, " frames from frame ", f.start_frame,
             "; the step was planned for 1 to ", cfg_.max_write_frames, " (max_write_frames)");
    m.stream = stream;
    m.fwd = f;
    // The sparse step first retains blocks of the frames leaving the window (their pages are reused by this write).
    if (m.sp.on) m.sparse_retain(m.cache->plan(f.start_frame, f.num_frames, f.protect_sink));
    m.plan = &m.cache->write(f.start_frame, f.num_frames, f.protect_sink);
    m.cache->upload(stream);
    if (m.sp.on) m.sparse_tables(*m.plan, f);
    return m.plan->write;
}

CudaQkvTarget CudaLocalAttentionStep::qkv(int64_t layer) {
    Impl& m = *impl_;
    CudaQkvTarget t;
    t.q = m.q;
    // The sparse step attends in the cache's tiled order: q goes straight into its tiled rows.
    t.q_row = m.sp.on ? m.sp.device(m.sp.o_qperm) : nullptr;
    t.k = m.cache->keys(layer);
    t.v = m.cache->values(layer);
    t.kv_row = m.plan->device.dst_row;
    return t;
}

void CudaLocalAttentionStep::attend(int64_t layer, void* out) {
    Impl& m = *impl_;
    if (!m.sp.on) {
        attend_rows(layer, m.q, m.forward_rows(), out, 0);
        return;
    }
    m.sparse_select(layer, m.q, false);
    m.sparse_attention(layer, m.q, m.out_tiled, 0);
    // Raster row r of the chunk <- tiled row qperm[r].
    CopyRowsParams g;
    g.src = m.out_tiled;
    g.dst = out;
    g.src_row = m.sp.device(m.sp.o_qperm);
    g.rows = m.forward_rows();
    g.row_bytes = m.width * 2;
    launch_copy_rows(g, m.stream);
}

void CudaLocalAttentionStep::store_kv(int64_t layer, const void* k, const void* v) {
    Impl& m = *impl_;
    const void* src[2] = {k, v};
    void* pool[2] = {m.cache->keys(layer), m.cache->values(layer)};
    for (int j = 0; j < 2; ++j) {
        NormRopeParams p;  // a row copy into the pools (no norm, no RoPE)
        p.x = src[j];
        p.x_dtype = DType::kBF16;
        p.y = pool[j];
        p.dst_row = m.plan->device.dst_row;
        p.rows = m.forward_rows();
        p.heads = cfg_.num_heads;
        p.head_dim = cfg_.head_dim;
        launch_norm_rope(p, m.stream);
    }
}

void CudaLocalAttentionStep::attend_rows(int64_t layer, const void* q, int64_t q_len, void* out, int64_t split_ctas) {
    Impl& m = *impl_;
    LR_ASSERT(!m.sp.on, "CUDA attention step: attend_rows reads the dense table; the sparse step attends tiled");
    const PagedKvPlan& plan = *m.plan;
    const void* keys = cfg_.rope == RopePositions::kWindowRelative ? m.rotated_keys(layer) : m.cache->keys(layer);
    PagedAttentionParams p;
    p.q = q;
    p.out = out;
    p.k = keys;
    p.v = m.cache->values(layer);
    p.block_len = plan.device.block_len;
    p.indptr = plan.device.indptr;
    p.indices = plan.device.indices;
    p.table_heads = 1;
    p.q_len = static_cast<int>(q_len);
    p.heads = static_cast<int>(cfg_.num_heads);
    p.head_dim = static_cast<int>(cfg_.head_dim);
    p.block_size = static_cast<int>(cfg_.block_size);
    p.q_block = static_cast<int>(kCudaQBlock);
    p.split_ctas = split_ctas;
    launch_paged_attention(p, m.stream);
}

void CudaLocalAttentionStep::attend_tiled(int64_t layer, const void* q_tiled, void* out_tiled, bool means_given,
                                          int64_t split_ctas) {
    Impl& m = *impl_;
    LR_ASSERT(m.sp.on, "CUDA attention step: attend_tiled is the sparse step's");
    m.sparse_select(layer, q_tiled, means_given);
    m.sparse_attention(layer, q_tiled, out_tiled, split_ctas);
}

float* CudaLocalAttentionStep::query_means(int64_t layer) const {
    const Impl& m = *impl_;
    return m.sp.qmean + layer * m.sp.z.heads * m.sp.nqb * m.sp.z.head_dim;
}

void CudaLocalAttentionStep::end() {
    if (impl_->sp.on) impl_->sparse_after_layers();
}

bool CudaLocalAttentionStep::capturable() const { return !impl_->sp.on; }

int64_t CudaLocalAttentionStep::graph_key() const {
    return cfg_.rope == RopePositions::kWindowRelative ? impl_->plan->kv_tokens : 0;
}

AttentionStats CudaLocalAttentionStep::stats() const { return impl_->sp.stats; }
int64_t CudaLocalAttentionStep::cached_frames() const { return impl_->cache->frames(); }
int64_t CudaLocalAttentionStep::max_cached_frames() const { return impl_->cache->config().max_frames; }
size_t CudaLocalAttentionStep::kv_bytes() const { return PagedKvCache::pool_bytes(impl_->cache->config()); }
void CudaLocalAttentionStep::reset(int64_t first_frame) {
    impl_->cache->reset(first_frame);
    if (impl_->sp.on) impl_->sparse_reset();
}
const PagedKvCache& CudaLocalAttentionStep::cache() const { return *impl_->cache; }
bool CudaLocalAttentionStep::sparse() const { return impl_->sp.on; }
bool CudaLocalAttentionStep::uses_summaries() const { return impl_->sp.on && impl_->sp.summaries; }
int64_t CudaLocalAttentionStep::query_blocks() const { return cuda_step::ceil_div(impl_->forward_rows(), kCudaQBlock); }

#else  // CPU-only build: the class exists so that callers compile; constructing it says why it cannot run.

struct CudaLocalAttentionStep::Impl {};

CudaLocalAttentionStep::CudaLocalAttentionStep(const CudaAttentionStepConfig& cfg) : cfg_(cfg) {
    LR_RUNTIME(false, "CUDA attention step: this longroll was built without CUDA");
}
CudaLocalAttentionStep::~CudaLocalAttentionStep() = default;

namespace {
[[noreturn]] void no_cuda() {
    LR_ASSERT(false, "CUDA attention step used in a build without CUDA");
    __builtin_unreachable();
}
}  // namespace

KvWrite CudaLocalAttentionStep::begin(const AttentionForward&, Stream) { no_cuda(); }
CudaQkvTarget CudaLocalAttentionStep::qkv(int64_t) { no_cuda(); }
void CudaLocalAttentionStep::attend(int64_t, void*) { no_cuda(); }
void CudaLocalAttentionStep::store_kv(int64_t, const void*, const void*) { no_cuda(); }
void CudaLocalAttentionStep::attend_rows(int64_t, const void*, int64_t, void*, int64_t) { no_cuda(); }
void CudaLocalAttentionStep::attend_tiled(int64_t, const void*, void*, bool, int64_t) { no_cuda(); }
float* CudaLocalAttentionStep::query_means(int64_t) const { no_cuda(); }
void CudaLocalAttentionStep::end() { no_cuda(); }
bool CudaLocalAttentionStep::capturable() const { no_cuda(); }
int64_t CudaLocalAttentionStep::graph_key() const { no_cuda(); }
AttentionStats CudaLocalAttentionStep::stats() const { no_cuda(); }
int64_t CudaLocalAttentionStep::cached_frames() const { no_cuda(); }
int64_t CudaLocalAttentionStep::max_cached_frames() const { no_cuda(); }
size_t CudaLocalAttentionStep::kv_bytes() const { no_cuda(); }
void CudaLocalAttentionStep::reset(int64_t) { no_cuda(); }
const PagedKvCache& CudaLocalAttentionStep::cache() const { no_cuda(); }
bool CudaLocalAttentionStep::sparse() const { no_cuda(); }
bool CudaLocalAttentionStep::uses_summaries() const { no_cuda(); }
int64_t CudaLocalAttentionStep::query_blocks() const { no_cuda(); }

#endif

}  // namespace lr
