// CudaWanModel: WanModel::forward (wan_model.cpp, one rank) on the GPU, module by module, over kernels/*_cuda.h
// and the paged KV cache. The memory plan (which buffers, how large) is in wan_model_cuda_plan.{h,cpp}; it is
// plain arithmetic, so device_bytes() answers in CPU-only builds too. The rest needs the CUDA runtime.
#include "runtime/model/wan_model_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/model/wan_model_cuda_plan.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cast.h"
#include "runtime/core/det_random.h"
#include "runtime/model/wan_model_cuda_impl.h"
#endif

namespace lr {

using wan_cuda::Activations;
using wan_cuda::ceil_div;
using wan_cuda::DevBlock;
using wan_cuda::DevLinear;
using wan_cuda::DevWeights;
using wan_cuda::kGemmWorkspace;
using wan_cuda::kHeadroom;
using wan_cuda::kQBlock;
using wan_cuda::lay_out_activations;
using wan_cuda::lay_out_weights;
using wan_cuda::plan_bytes;
using wan_cuda::PlanBytes;
using wan_cuda::Planner;
using wan_cuda::text_blocks;

size_t CudaPrompt::bytes_for(const WanModelConfig& cfg) {
    const int64_t rows = ceil_div(cfg.text_len, kCrossBlock) * kCrossBlock;
    return static_cast<size_t>(cfg.dims.num_layers * 2 * rows * cfg.dims.dim) * 2;
}

const void* CudaPrompt::k(int64_t layer) const {
    LR_ASSERT(storage.data() && layer >= 0 && layer < num_layers, "CUDA prompt: layer ", layer, " of ", num_layers);
    return static_cast<const char*>(storage.data()) + static_cast<size_t>(2 * layer * rows * dim) * 2;
}

const void* CudaPrompt::v(int64_t layer) const {
    LR_ASSERT(storage.data() && layer >= 0 && layer < num_layers, "CUDA prompt: layer ", layer, " of ", num_layers);
    return static_cast<const char*>(storage.data()) + static_cast<size_t>((2 * layer + 1) * rows * dim) * 2;
}

CudaAttentionStepConfig attention_step_config(const WanModelConfig& cfg, const CudaModelOptions& o) {
    const WanDims& d = cfg.dims;
    CudaAttentionStepConfig c;
    c.num_layers = d.num_layers;
    c.num_heads = d.num_heads;
    c.head_dim = d.num_heads > 0 ? d.dim / d.num_heads : 0;
    c.grid_rows = d.patch[1] > 0 ? o.height / d.patch[1] : 0;
    c.grid_cols = d.patch[2] > 0 ? o.width / d.patch[2] : 0;
    c.block_size = o.kv_block_size;
    c.window_frames = o.window_frames;
    c.sink_frames = o.sink_frames;
    c.max_frames = o.max_frames;
    c.max_write_frames = o.max_forward_frames;
    c.rope = o.rope;
    c.policy = o.policy;
    c.frames_per_chunk = o.frames_per_chunk;
    c.run_frames = o.run_frames;
    return c;
}

size_t CudaWanModel::device_bytes(const WanModelConfig& cfg, const CudaModelOptions& opts) {
    return plan_bytes(cfg, opts).total();
}

#ifdef LONGROLL_HAS_CUDA

namespace {

// Where the weights come from: a host WanModel (F32, cast to bf16 here) or generated (benchmarks).
class WeightSource {
  public:
    virtual ~WeightSource() = default;
    // bf16 [rows, cols] at dst from the tensor `name` (rows * cols elements).
    virtual void matrix(void* dst, const std::string& name, int64_t rows, int64_t cols) = 0;
    // f32 [n] at dst.
    virtual void vector(float* dst, const std::string& name, int64_t n) = 0;
};

class HostWeights final : public WeightSource {
  public:
    explicit HostWeights(const WanModel& m) : m_(m) {}
    void matrix(void* dst, const std::string& name, int64_t rows, int64_t cols) override {
        const HostTensor& t = checked(name, rows * cols);
        std::vector<uint16_t> bf(static_cast<size_t>(rows * cols));
        cast_cpu({t.view.data, bf.data(), DType::kF32, DType::kBF16, rows * cols});
        LR_CUDA_CHECK(cudaMemcpy(dst, bf.data(), bf.size() * 2, cudaMemcpyHostToDevice));
    }
    void vector(float* dst, const std::string& name, int64_t n) override {
        const HostTensor& t = checked(name, n);
        LR_CUDA_CHECK(cudaMemcpy(dst, t.view.data, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice));
    }

  private:
    const HostTensor& checked(const std::string& name, int64_t n) const {
        const HostTensor& t = m_.weight(name);
        LR_CHECK(t.view.dtype == DType::kF32 && t.view.numel() == n, "CUDA model: weight '", name, "' is ",
                 t.view.str(), ", expected F32 with ", n, " elements");
        return t;
    }
    const WanModel& m_;
};

// Deterministic weights made on the device: a matrix repeats a host-made block of kPeriod values (a prime, so
// rows do not line up) ~ U(-1, 1) / sqrt(cols), doubled in place with device-to-device copies; vectors (small)
// follow make_default_wan_weights' rules on the host. The values only have to look like a network's.
class RandomWeights final : public WeightSource {
  public:
    RandomWeights(uint64_t seed, Stream stream) : seed_(seed), stream_(stream) {}
    void matrix(void* dst, const std::string& name, int64_t rows, int64_t cols) override {
        const int64_t n = rows * cols;
        const int64_t first = std::min(n, kPeriod);
        const uint64_t key = tensor_stream_key(seed_, name);
        const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
        std::vector<uint16_t> block(static_cast<size_t>(first));
        for (int64_t i = 0; i < first; ++i)
            block[static_cast<size_t>(i)] = f32_to_bf16_bits(scale * uniform_pm1(key, static_cast<uint64_t>(i)));
        auto* d = static_cast<char*>(dst);
        // On the stream, so that the copies below read the block after it has landed (pageable source: the call
        // returns once the block is staged).
        LR_CUDA_CHECK(cudaMemcpyAsync(d, block.data(), block.size() * 2, cudaMemcpyHostToDevice, stream_));
        for (int64_t done = first; done < n;) {  // [0, done) -> [done, ...): never overlapping
            const int64_t count = std::min(done, n - done);
            LR_CUDA_CHECK(
                cudaMemcpyAsync(d + done * 2, d, static_cast<size_t>(count) * 2, cudaMemcpyDeviceToDevice, stream_));
            done += count;
        }
    }
    void vector(float* dst, const std::string& name, int64_t n) override {
        const uint64_t key = tensor_stream_key(seed_, name);
        const bool gain =
            name.ends_with("norm_q.weight") || name.ends_with("norm_k.weight") || name.ends_with("norm3.weight");
        std::vector<float> v(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i)
            v[static_cast<size_t>(i)] = (gain ? 1.0f : 0.0f) + (gain ? 0.1f : 0.02f) * uniform_pm1(key, i);
        LR_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    }

  private:
    static constexpr int64_t kPeriod = 65521;
    uint64_t seed_;
    Stream stream_;
};

void fill_linear(WeightSource& src, const DevLinear& l, const std::string& name) {
    src.matrix(l.w, name + ".weight", l.out, l.in);
    src.vector(l.b, name + ".bias", l.out);
}

void fill_weights(WeightSource& src, const WanModelConfig& cfg, const DevWeights& w) {
    const int64_t dim = cfg.dims.dim;
    fill_linear(src, w.patch, "patch_embedding");
    fill_linear(src, w.text0, "text_embedding.0");
    fill_linear(src, w.text2, "text_embedding.2");
    fill_linear(src, w.time0, "time_embedding.0");
    fill_linear(src, w.time2, "time_embedding.2");
    fill_linear(src, w.time_proj, "time_projection.1");
    for (size_t i = 0; i < w.blocks.size(); ++i) {
        const DevBlock& b = w.blocks[i];
        const std::string p = str_cat("blocks.", i, ".");
        src.vector(b.modulation, p + "modulation", 6 * dim);
        const char* qkv[3] = {"q", "k", "v"};
        for (int64_t j = 0; j < 3; ++j) {  // rows [j dim, (j + 1) dim) of the fused projection
            src.matrix(static_cast<char*>(b.qkv.w) + j * dim * dim * 2, p + "self_attn." + qkv[j] + ".weight", dim,
                       dim);
            src.vector(b.qkv.b + j * dim, p + "self_attn." + qkv[j] + ".bias", dim);
        }
        fill_linear(src, b.self_o, p + "self_attn.o");
        src.vector(b.norm_q, p + "self_attn.norm_q.weight", dim);
        src.vector(b.norm_k, p + "self_attn.norm_k.weight", dim);
        src.vector(b.norm3_w, p + "norm3.weight", dim);
        src.vector(b.norm3_b, p + "norm3.bias", dim);
        fill_linear(src, b.cross_q, p + "cross_attn.q");
        fill_linear(src, b.cross_k, p + "cross_attn.k");
        fill_linear(src, b.cross_v, p + "cross_attn.v");
        fill_linear(src, b.cross_o, p + "cross_attn.o");
        src.vector(b.cross_norm_q, p + "cross_attn.norm_q.weight", dim);
        src.vector(b.cross_norm_k, p + "cross_attn.norm_k.weight", dim);
        fill_linear(src, b.ffn0, p + "ffn.0");
        fill_linear(src, b.ffn2, p + "ffn.2");
    }
    src.vector(w.head_modulation, "head.modulation", 2 * dim);
    fill_linear(src, w.head, "head.head");
}

}  // namespace

CudaWanModel::Impl::Impl(const WanModelConfig& c, const CudaModelOptions& o, const WanModel* host, uint64_t seed)
    : cfg(c), opts(o) {
    bytes = plan_bytes(cfg, opts);  // validates the options
    const WanDims& d = cfg.dims;
    gh = opts.height / d.patch[1];
    gw = opts.width / d.patch[2];
    tpf = gh * gw;
    // Refuse before allocating anything: say what the plan needs and what the device has.
    size_t free_bytes = 0, total_bytes = 0;
    LR_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    LR_CHECK(bytes.total() + kHeadroom <= free_bytes, "CUDA model: the plan needs ", format_bytes(bytes.total()),
             " of device memory (weights ", format_bytes(bytes.weights), ", KV cache ", format_bytes(bytes.kv),
             ", activations ", format_bytes(bytes.activations), " for ", opts.max_forward_frames,
             " frames, GEMM workspace ", format_bytes(bytes.workspace), ", one prompt ", format_bytes(bytes.prompt),
             ") plus ", format_bytes(kHeadroom), " headroom, but only ", format_bytes(free_bytes), " of ",
             format_bytes(total_bytes), " are free; plan fewer frames (rollout.local_attn_size) or a smaller latent");

    arena = Arena(Device::kCuda, bytes.weights + bytes.activations);
    Planner planner(&arena);
    lay_out_weights(planner, cfg, w);
    // Activations start zeroed: rows past a forward's tokens are read (never used) by whole-tile kernels.
    planner.zero = true;
    lay_out_activations(planner, cfg, opts, act);
    LR_ASSERT(planner.total() == bytes.weights + bytes.activations, "CUDA model: laid out ", planner.total(),
              " bytes, planned ", bytes.weights + bytes.activations);
    if (opts.step) {
        step = opts.step;
    } else {
        own_step = std::make_unique<CudaLocalAttentionStep>(attention_step_config(cfg, opts));
        step = own_step.get();
    }
    gemm = std::make_unique<GemmRunner>(kGemmWorkspace);
    const char* graphs_env = std::getenv("LONGROLL_CUDA_GRAPHS");
    use_graphs = opts.cuda_graphs && !(graphs_env && std::string(graphs_env) == "0");
    forward_staging = PinnedStaging(static_cast<size_t>(opts.max_forward_frames * (1 + 4 * tpf)) * 4, true);
    prompt_staging = PinnedStaging(static_cast<size_t>(cfg.text_len * d.text_dim) * 2, true);

    if (host) {
        HostWeights src(*host);
        fill_weights(src, cfg, w);
    } else {
        RandomWeights src(seed, stream.s);
        fill_weights(src, cfg, w);
    }
    upload_static_tables();
    // The zeroing and the synchronous uploads ran on the legacy default stream, which a non-blocking stream does
    // not wait for: finish everything before the first forward.
    LR_CUDA_CHECK(cudaDeviceSynchronize());
}

// Tables that never change: the cross-attention table (the prompt's text_len rows as blocks of 128, every
// block for every query block).
void CudaWanModel::Impl::upload_static_tables() {
    const int64_t nb = text_blocks(cfg), qb = act.rows / kQBlock, B = CudaPrompt::kCrossBlock;
    std::vector<int32_t> block_len(static_cast<size_t>(nb)), indptr(static_cast<size_t>(qb + 1)),
        indices(static_cast<size_t>(qb * nb));
    for (int64_t b = 0; b < nb; ++b)
        block_len[static_cast<size_t>(b)] = static_cast<int32_t>(std::min(B, cfg.text_len - b * B));
    for (int64_t r = 0; r <= qb; ++r) indptr[static_cast<size_t>(r)] = static_cast<int32_t>(r * nb);
    for (int64_t r = 0; r < qb; ++r)
        for (int64_t b = 0; b < nb; ++b) indices[static_cast<size_t>(r * nb + b)] = static_cast<int32_t>(b);
    LR_CUDA_CHECK(cudaMemcpy(act.cross_block_len, block_len.data(), block_len.size() * 4, cudaMemcpyHostToDevice));
    LR_CUDA_CHECK(cudaMemcpy(act.cross_indptr, indptr.data(), indptr.size() * 4, cudaMemcpyHostToDevice));
    LR_CUDA_CHECK(cudaMemcpy(act.cross_indices, indices.data(), indices.size() * 4, cudaMemcpyHostToDevice));
}

void CudaWanModel::Impl::encode(const TensorView& context, CudaPrompt& p) {
    const WanDims& d = cfg.dims;
    const int64_t T = cfg.text_len, dim = d.dim;
    LR_CHECK(context.device == Device::kCpu && context.is_contiguous() && context.ndim() == 2 && context.size(0) >= 1 &&
                 context.size(0) <= T && context.size(1) == d.text_dim && cast_supported(context.dtype, DType::kBF16),
             "prompt embedding is ", context.str(), ", expected a contiguous host [L, ", d.text_dim,
             "] F32, BF16 or F16 tensor with 1 <= L <= ", T);
    LR_CHECK(p.storage.data() != nullptr && p.storage.size() >= CudaPrompt::bytes_for(cfg) && p.text_len == T &&
                 p.dim == dim && p.num_layers == d.num_layers,
             "CUDA prompt: not made by this model's encode_prompt");
    // Zero-padded to text_len, as the reference does: after text_embedding's biases the padding rows are not
    // zero, and cross-attention attends to all of them.
    prompt_staging.wait();
    auto* ctx = static_cast<uint16_t*>(prompt_staging.data());
    std::fill(ctx, ctx + T * d.text_dim, uint16_t{0});
    cast_cpu({context.data, ctx, context.dtype, DType::kBF16, context.numel()});
    prompt_staging.to_device(act.ctx, 0, static_cast<size_t>(T * d.text_dim) * 2, stream.s);
    prompt_staging.record(stream.s);

    linear(act.ctx, w.text0, T, act.text_hidden, DType::kBF16, GemmEpilogue::kBiasGeluTanh);
    linear(act.text_hidden, w.text2, T, act.text, DType::kBF16);
    if (dump) dump_device("text_embedding", act.text, DType::kBF16, Shape{T, dim});
    for (int64_t l = 0; l < d.num_layers; ++l) {
        const DevBlock& b = w.blocks[static_cast<size_t>(l)];
        linear(act.text, b.cross_k, T, act.text_tmp, DType::kF32);
        norm_rope(act.text_tmp, DType::kF32, 0, nullptr, const_cast<void*>(p.k(l)), nullptr, b.cross_norm_k, nullptr,
                  T);
        linear(act.text, b.cross_v, T, const_cast<void*>(p.v(l)), DType::kBF16);
    }
}

CudaWanModel::Impl::Geometry CudaWanModel::Impl::prepare(const CudaForwardArgs& a) {
    const WanDims& d = cfg.dims;
    const int64_t dim = d.dim, F = a.frames, L = F * tpf;
    LR_CHECK(a.x != nullptr && a.t != nullptr && a.out != nullptr, "CUDA forward: x, t and out must be set");
    LR_CHECK(F > 0 && F <= opts.max_forward_frames && a.start_frame >= 0, "CUDA forward: ", F, " frames from frame ",
             a.start_frame, "; the model was planned for 1 to ", opts.max_forward_frames,
             " (CudaModelOptions.max_forward_frames)");
    LR_CHECK(a.prompt != nullptr && a.prompt->storage.data() != nullptr && a.prompt->text_len == cfg.text_len &&
                 a.prompt->dim == dim && a.prompt->num_layers == d.num_layers,
             "CUDA forward: no prompt prepared by this model");
    const bool relative = opts.rope == RopePositions::kWindowRelative;

    // ---- The step plans the forward (slots, evictions, tables: host) and uploads it; then this worker's tokens:
    // every token of the chunk, or the step's share of them.
    AttentionForward f;
    f.start_frame = a.start_frame;
    f.num_frames = F;
    f.protect_sink = a.protect_sink;
    f.chunk = a.chunk;
    f.step = a.step;
    f.num_steps = a.num_steps;
    const KvWrite w = step->begin(f, stream.s);
    Geometry g;
    g.F = F;
    g.L = L;
    g.relative = relative;
    g.shares = step->shares_tokens();
    const std::vector<int64_t>* tokens = g.shares ? &step->tokens() : nullptr;
    g.n = tokens ? static_cast<int64_t>(tokens->size()) : L;
    LR_ASSERT(g.n <= L, "CUDA forward: the step shares ", g.n, " tokens of ", L);
    forward_staging.wait();
    auto* ts = static_cast<float*>(forward_staging.data());
    auto* pos = reinterpret_cast<int32_t*>(ts + opts.max_forward_frames);
    int32_t* tok = pos + 3 * opts.max_forward_frames * tpf;
    std::copy_n(a.t, F, ts);
    // (frame, row, col) of each of the worker's tokens; in window-relative mode the frame is the slot.
    for (int64_t r = 0; r < g.n; ++r) {
        const int64_t t = tokens ? (*tokens)[static_cast<size_t>(r)] : r, fr = t / tpf, i = t % tpf;
        int32_t* p = pos + 3 * r;
        p[0] = static_cast<int32_t>(relative ? w.slot_begin + fr : a.start_frame + fr);
        p[1] = static_cast<int32_t>(i / gw);
        p[2] = static_cast<int32_t>(i % gw);
        if (tokens) tok[r] = static_cast<int32_t>(t);
    }
    if (tokens) {
        // The worker's rows come frame by frame (the step's order): one run per frame for the modulation.
        for (int64_t r = 0; r < g.n; ++r) {
            const int64_t fr = (*tokens)[static_cast<size_t>(r)] / tpf;
            LR_ASSERT(g.runs.empty() || g.runs.back().frame <= fr, "CUDA forward: the step's tokens are not in ",
                      "frame order (row ", r, ")");
            if (g.runs.empty() || g.runs.back().frame != fr) g.runs.push_back({r, 0, fr, 0});
            ++g.runs.back().rows;
        }
        for (Geometry::Run& run : g.runs) run.rows_per_group = run.rows;
    } else {
        g.runs.push_back({0, L, 0, tpf});
    }
    float* d_t = act.forward_in;
    auto* d_pos = reinterpret_cast<int32_t*>(act.forward_in + opts.max_forward_frames);
    int32_t* d_tok = d_pos + 3 * opts.max_forward_frames * tpf;
    forward_staging.to_device(d_t, 0, static_cast<size_t>(F) * 4, stream.s);
    forward_staging.to_device(d_pos, static_cast<size_t>(opts.max_forward_frames) * 4, static_cast<size_t>(3 * g.n) * 4,
                              stream.s);
    if (tokens)
        forward_staging.to_device(d_tok, static_cast<size_t>(opts.max_forward_frames * (1 + 3 * tpf)) * 4,
                                  static_cast<size_t>(g.n) * 4, stream.s);
    forward_staging.record(stream.s);
    g.d_t = d_t;
    g.d_pos = d_pos;
    g.d_tokens = tokens ? d_tok : nullptr;
    return g;
}

// A forward: the host tables and their uploads (prepare), then the launches, eagerly or as a CUDA graph.
//
// Graphs: the launches of a forward depend only on the geometry (frames), the buffers (x, out, the prompt) and,
// with window-relative RoPE, the number of cached rows re-rotated; everything else they read (timesteps,
// positions, block tables, slot rows) comes from device buffers at fixed addresses that prepare() and the step's
// begin() refill before the launch. So a key of those values names a graph that stays valid: a key seen for the
// first time runs eagerly (which also warms up cuBLASLt's plans and the kernels' attributes, so that nothing
// synchronous is called while capturing), the second time it is captured, and later forwards with that key replay
// it. Graphs are off where the step says its launches cannot be captured (the sparse step's sizes change with the
// window's candidates; a sharded step's exchange with a host communicator synchronises, and the communicators'
// byte counters count calls, not replays) and while a dump hook is set.
void CudaWanModel::Impl::forward(const CudaForwardArgs& a) {
    const Geometry g = prepare(a);
    if (use_graphs && !dump && !g.shares && step->capturable()) {
        launch_graph(a, g);
    } else {
        ++graph_stats.eager;
        launch(a, g);
    }
}

void CudaWanModel::Impl::launch_graph(const CudaForwardArgs& a, const Geometry& g) {
    const GraphKey key{g.F, a.x, a.out, a.prompt->storage.data(), step->graph_key()};
    auto it = std::find_if(graphs.begin(), graphs.end(), [&](const CachedGraph& c) { return c.key == key; });
    if (it == graphs.end()) {
        if (graphs.size() == kMaxGraphs) {
            auto oldest =
                std::min_element(graphs.begin(), graphs.end(),
                                 [](const CachedGraph& x, const CachedGraph& y) { return x.last_use < y.last_use; });
            // An executable graph still running is freed when it completes.
            if (oldest->exec) LR_CUDA_CHECK(cudaGraphExecDestroy(oldest->exec));
            graphs.erase(oldest);
        }
        graphs.push_back({key, nullptr, ++graph_clock});
        ++graph_stats.eager;
        launch(a, g);
        return;
    }
    it->last_use = ++graph_clock;
    if (!it->exec) {
        cudaGraph_t graph = nullptr;
        // Thread-local: the VAE's thread may make synchronous calls meanwhile; only this thread's are checked.
        LR_CUDA_CHECK(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeThreadLocal));
        try {
            launch(a, g);
        } catch (...) {
            cudaStreamEndCapture(stream.s, &graph);  // leaves the stream usable; the partial graph is dropped
            if (graph) cudaGraphDestroy(graph);
            throw;
        }
        LR_CUDA_CHECK(cudaStreamEndCapture(stream.s, &graph));
        const cudaError_t rc = cudaGraphInstantiate(&it->exec, graph, 0);
        cudaGraphDestroy(graph);
        LR_CUDA_CHECK(rc);
        ++graph_stats.captured;
    }
    LR_CUDA_CHECK(cudaGraphLaunch(it->exec, stream.s));
    ++graph_stats.replayed;
}

// The launches of one forward, all on the model's stream (capturable where the step's are, without a dump hook).
void CudaWanModel::Impl::launch(const CudaForwardArgs& a, const Geometry& geo) {
    const WanDims& d = cfg.dims;
    const int64_t dim = d.dim, F = geo.F, L = geo.L, n = geo.n, H = heads(), hd = head_dim();
    const float* d_t = geo.d_t;
    const int32_t* d_pos = geo.d_pos;

    // ---- Patch embedding: Conv3d as a linear map of each patch. x: [n, dim] f32, this worker's tokens (a step
    // that shares tokens: its rows' patches gathered out of the chunk's).
    const PatchShape ps{F, d.in_dim, opts.height, opts.width, d.patch[0], d.patch[1], d.patch[2]};
    launch_patchify({a.x, act.patches, ps}, stream.s);
    if (n > 0 && geo.shares) {
        CopyRowsParams g;
        g.src = act.patches;
        g.dst = act.ffn;  // [rows, ffn_dim] bf16: wide enough (check_options)
        g.src_row = geo.d_tokens;
        g.rows = n;
        g.row_bytes = ps.patch_size() * 2;
        launch_copy_rows(g, stream.s);
        linear(act.ffn, w.patch, n, act.x, DType::kF32);
    } else if (n > 0) {
        linear(act.patches, w.patch, n, act.x, DType::kF32);
    }
    if (dump) dump_device("patch_embedding", act.x, DType::kF32, Shape{n, dim});

    // ---- Time: e = time_embedding(sinusoid(t)) [F, dim]; e0 = time_projection(silu(e)) [F, 6, dim].
    launch_timestep_embedding({d_t, act.sinusoid, F, d.freq_dim}, stream.s);
    launch_cast({act.sinusoid, act.sinusoid_bf, DType::kF32, DType::kBF16, F * d.freq_dim}, stream.s);
    linear(act.sinusoid_bf, w.time0, F, act.t_hidden, DType::kF32);
    silu_to_bf16(act.t_hidden, act.t_act, F * dim);
    linear(act.t_act, w.time2, F, act.e, DType::kF32);
    if (dump) dump_device("time_embedding", act.e, DType::kF32, Shape{F, dim});
    silu_to_bf16(act.e, act.t_act, F * dim);
    linear(act.t_act, w.time_proj, F, act.e0, DType::kF32);
    if (dump) dump_device("time_projection", act.e0, DType::kF32, Shape{F, 6, dim});
    // The head's (shift, scale) = head.modulation + e per frame -- e, not the projected e0.
    launch_add_broadcast({w.head_modulation, act.e, act.head_shift, F, dim}, stream.s);
    launch_add_broadcast({w.head_modulation + dim, act.e, act.head_scale, F, dim}, stream.s);

    const int64_t ms = 6 * dim;  // stride between frames in mod: [F, 6, dim]
    const int64_t qkv_stride = 3 * dim;
    for (int64_t l = 0; l < d.num_layers; ++l) {
        const DevBlock& b = w.blocks[static_cast<size_t>(l)];
        const std::string name = dump ? str_cat("blocks.", l, ".") : std::string();
        // m = modulation + e0: per frame (shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff)
        launch_add_broadcast({b.modulation, act.e0, act.mod, F, ms}, stream.s);
        const float* m = act.mod;

        // ---- Self-attention on norm1(x) * (1 + scale_sa) + shift_sa; q/k/v from one fused GEMM [n, 3 dim].
        if (n > 0) {
            modulated_norm(act.x, act.h, geo, m + 0 * dim, m + 1 * dim, ms);
            linear(act.h, b.qkv, n, act.tmp, DType::kF32);
        }
        const float* raw_q = act.tmp;
        const float* raw_k = act.tmp + dim;
        const float* raw_v = act.tmp + 2 * dim;
        // q: RMSNorm over the whole dim, RoPE at the token's position. k: RMSNorm, RoPE only in absolute mode
        // (window-relative keys are cached un-rotated). v: as is. All three go where the step wants them (the
        // single-GPU step: q into its query rows, k and v straight into the layer's pools).
        const int32_t* k_pos = geo.relative ? nullptr : d_pos;
        const CudaQkvTarget t = step->qkv(l);
        if (n > 0) {
            if (dump) {  // into attn (free until the attention writes it), in the worker's row order
                norm_rope(raw_q, DType::kF32, qkv_stride, nullptr, act.attn, nullptr, b.norm_q, d_pos, n);
                dump_device(name + "self_attn.q", act.attn, DType::kBF16, Shape{n, H, hd});
                norm_rope(raw_k, DType::kF32, qkv_stride, nullptr, act.attn, nullptr, b.norm_k, k_pos, n);
                dump_device(name + "self_attn.k", act.attn, DType::kBF16, Shape{n, H, hd});
                norm_rope(raw_v, DType::kF32, qkv_stride, nullptr, act.attn, nullptr, nullptr, nullptr, n);
                dump_device(name + "self_attn.v", act.attn, DType::kBF16, Shape{n, H, hd});
            }
            norm_rope(raw_q, DType::kF32, qkv_stride, nullptr, t.q, t.q_row, b.norm_q, d_pos, n);
            norm_rope(raw_k, DType::kF32, qkv_stride, nullptr, t.k, t.kv_row, b.norm_k, k_pos, n);
            norm_rope(raw_v, DType::kF32, qkv_stride, nullptr, t.v, t.kv_row, nullptr, nullptr, n);
        }
        // The attention output of the worker's tokens, all heads, into act.attn (a worker without tokens still
        // calls it: a sharded step exchanges with its peers).
        step->attend(l, act.attn);
        if (n > 0) {
            linear(act.attn, b.self_o, n, act.tmp, DType::kF32);
            if (dump) dump_device(name + "self_attn", act.tmp, DType::kF32, Shape{n, dim});
            gated_residual(act.x, act.tmp, geo, m + 2 * dim, ms);

            // ---- Cross-attention on norm3(x) (affine, no modulation, no gate) over the prompt's K/V: the worker's
            // tokens, all heads.
            layer_norm(act.x, act.h, n, b.norm3_w, b.norm3_b, nullptr, nullptr, 1, 0);
            linear(act.h, b.cross_q, n, act.tmp, DType::kF32);
            norm_rope(act.tmp, DType::kF32, 0, nullptr, act.q, nullptr, b.cross_norm_q, nullptr, n);
            attention(act.q, act.attn, a.prompt->k(l), a.prompt->v(l), act.cross_block_len, act.cross_indptr,
                      act.cross_indices, n, CudaPrompt::kCrossBlock);
            if (dump) {
                linear(act.attn, b.cross_o, n, act.tmp, DType::kF32);
                dump_device(name + "cross_attn", act.tmp, DType::kF32, Shape{n, dim});
                residual(act.x, act.tmp, n, nullptr, 0, 0, 1);
            } else {
                linear(act.attn, b.cross_o, n, act.x, DType::kF32, GemmEpilogue::kBias, /*accumulate=*/true);
            }

            // ---- FFN on norm2(x) * (1 + scale_ff) + shift_ff: GELU-tanh fused into the first GEMM.
            modulated_norm(act.x, act.h, geo, m + 3 * dim, m + 4 * dim, ms);
            linear(act.h, b.ffn0, n, act.ffn, DType::kBF16, GemmEpilogue::kBiasGeluTanh);
            linear(act.ffn, b.ffn2, n, act.tmp, DType::kF32);
            if (dump) dump_device(name + "ffn", act.tmp, DType::kF32, Shape{n, dim});
            gated_residual(act.x, act.tmp, geo, m + 5 * dim, ms);
        }
        if (dump) dump_device(str_cat("blocks.", l), act.x, DType::kF32, Shape{n, dim});
    }
    step->end();

    // ---- Head: LN(x) * (1 + scale) + shift -> head.head [L, pt * ph * pw * out_dim] -> unpatchify. A step that
    // shares tokens gathers every worker's rows, so that every worker returns the whole chunk.
    if (n > 0) {
        modulated_norm(act.x, act.h, geo, act.head_shift, act.head_scale, dim);
        linear(act.h, w.head, n, act.tmp, DType::kF32);
    }
    const float* head = act.tmp;
    if (geo.shares) {
        step->gather(act.tmp, w.head.out, act.head_all);
        head = act.head_all;
    }
    if (dump) dump_device("head", head, DType::kF32, Shape{L, w.head.out});
    const PatchShape os{F, d.out_dim, opts.height, opts.width, d.patch[0], d.patch[1], d.patch[2]};
    launch_unpatchify({head, a.out, os}, stream.s);
}

CudaWanModel::CudaWanModel(const WanModel& host, const CudaModelOptions& opts)
    : impl_(std::make_unique<Impl>(host.config(), opts, &host, 0)) {}

CudaWanModel CudaWanModel::with_random_weights(const WanModelConfig& cfg, const CudaModelOptions& opts, uint64_t seed) {
    return CudaWanModel(std::make_unique<Impl>(cfg, opts, nullptr, seed));
}

CudaPrompt CudaWanModel::encode_prompt(const TensorView& context) {
    CudaPrompt p;
    p.text_len = impl_->cfg.text_len;
    p.rows = ceil_div(p.text_len, CudaPrompt::kCrossBlock) * CudaPrompt::kCrossBlock;
    p.dim = impl_->cfg.dims.dim;
    p.num_layers = impl_->cfg.dims.num_layers;
    p.storage = DeviceBuffer(CudaPrompt::bytes_for(impl_->cfg));
    // Padding rows past text_len are never written: zero, so that a masked key or value is never NaN.
    LR_CUDA_CHECK(cudaMemsetAsync(p.storage.data(), 0, p.storage.size(), impl_->stream.s));
    impl_->encode(context, p);
    return p;
}

void CudaWanModel::encode_prompt(const TensorView& context, CudaPrompt& prompt) { impl_->encode(context, prompt); }

void CudaWanModel::forward(const CudaForwardArgs& a) { impl_->forward(a); }

void CudaWanModel::reset_cache(int64_t first_frame) { impl_->step->reset(first_frame); }

const CudaAttentionStep& CudaWanModel::attention_step() const { return *impl_->step; }

Stream CudaWanModel::stream() const { return impl_->stream.s; }

const WanModelConfig& CudaWanModel::config() const { return impl_->cfg; }

const CudaModelOptions& CudaWanModel::options() const { return impl_->opts; }

int64_t CudaWanModel::tokens_per_frame() const { return impl_->tpf; }

size_t CudaWanModel::weight_bytes() const { return impl_->bytes.weights; }

size_t CudaWanModel::kv_bytes() const { return impl_->step->kv_bytes(); }

AttentionStats CudaWanModel::attention_stats() const { return impl_->step->stats(); }

size_t CudaWanModel::activation_bytes() const { return impl_->bytes.activations; }

void CudaWanModel::set_dump(WanDumpFn fn) { impl_->dump = std::move(fn); }

CudaGraphStats CudaWanModel::graph_stats() const { return impl_->graph_stats; }

#else  // CPU-only build: the class exists so that callers compile; constructing it says why it cannot run.

struct CudaWanModel::Impl {};

CudaWanModel::CudaWanModel(const WanModel&, const CudaModelOptions&) {
    LR_RUNTIME(false, "CUDA model: this longroll was built without CUDA");
}

CudaWanModel CudaWanModel::with_random_weights(const WanModelConfig&, const CudaModelOptions&, uint64_t) {
    LR_RUNTIME(false, "CUDA model: this longroll was built without CUDA");
}

namespace {
[[noreturn]] void no_cuda() {
    LR_ASSERT(false, "CUDA model used in a build without CUDA");
    __builtin_unreachable();
}
}  // namespace

CudaPrompt CudaWanModel::encode_prompt(const TensorView&) { no_cuda(); }
void CudaWanModel::encode_prompt(const TensorView&, CudaPrompt&) { no_cuda(); }
void CudaWanModel::forward(const CudaForwardArgs&) { no_cuda(); }
void CudaWanModel::reset_cache(int64_t) { no_cuda(); }
const CudaAttentionStep& CudaWanModel::attention_step() const { no_cuda(); }
Stream CudaWanModel::stream() const { no_cuda(); }
const WanModelConfig& CudaWanModel::config() const { no_cuda(); }
const CudaModelOptions& CudaWanModel::options() const { no_cuda(); }
int64_t CudaWanModel::tokens_per_frame() const { no_cuda(); }
size_t CudaWanModel::weight_bytes() const { no_cuda(); }
size_t CudaWanModel::kv_bytes() const { no_cuda(); }
AttentionStats CudaWanModel::attention_stats() const { no_cuda(); }
size_t CudaWanModel::activation_bytes() const { no_cuda(); }
void CudaWanModel::set_dump(WanDumpFn) { no_cuda(); }
CudaGraphStats CudaWanModel::graph_stats() const { no_cuda(); }

#endif

CudaWanModel::CudaWanModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaWanModel::CudaWanModel(CudaWanModel&&) noexcept = default;
CudaWanModel& CudaWanModel::operator=(CudaWanModel&&) noexcept = default;
CudaWanModel::~CudaWanModel() = default;

}  // namespace lr
