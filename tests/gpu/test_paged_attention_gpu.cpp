// CUDA paged attention against the CPU reference on random bf16 inputs: pools with a shuffled physical block
// order and unused blocks, dense and per-head sparse tables, short last blocks, strided rows, q_len not a
// multiple of 128, an empty table row, head_dim 128 (the tensor-core kernel) and others (the generic kernel),
// and the cross-attention layout. The padding of short blocks and the unused blocks hold NaN, so a kernel that
// reads a key it must mask fails. The CPU reference itself is checked against attention_cpu on gathered keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/attention.h"
#include "kernels/paged_attention.h"
#include "runtime/core/check.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

constexpr uint16_t kNaNBits = 0x7fc0;    // bf16 quiet NaN: never-valid pool slots
constexpr uint16_t kGuardBits = 0x4242;  // bf16 48.5: output slots the kernel must not write

// A problem on the host: strides 0 mean the defaults, as in PagedAttentionParams.
struct PagedCase {
    int heads = 0, head_dim = 0, block_size = 0, q_len = 0, table_heads = 1;
    int64_t q_row_stride = 0, out_row_stride = 0, kv_row_stride = 0, kv_block_stride = 0;
    float scale = 0.0f;
    std::vector<int32_t> block_len;  // [physical blocks]
    std::vector<int32_t> indptr;     // [table_heads * q_blocks + 1]
    std::vector<int32_t> indices;

    int64_t width() const { return static_cast<int64_t>(heads) * head_dim; }
    int64_t q_stride() const { return q_row_stride ? q_row_stride : width(); }
    int64_t out_stride() const { return out_row_stride ? out_row_stride : width(); }
    int64_t kv_stride() const { return kv_row_stride ? kv_row_stride : width(); }
    int64_t block_stride() const { return kv_block_stride ? kv_block_stride : block_size * kv_stride(); }
    int q_blocks() const { return (q_len + 127) / 128; }
};

// Block lengths of `frames` frames of `tokens_per_frame` tokens, each padded to whole blocks.
std::vector<int32_t> frame_blocks(int frames, int tokens_per_frame, int block_size) {
    std::vector<int32_t> lens;
    for (int f = 0; f < frames; ++f) {
        for (int t = 0; t < tokens_per_frame; t += block_size)
            lens.push_back(std::min(block_size, tokens_per_frame - t));
    }
    return lens;
}

// Places logical blocks at shuffled physical slots among `extra` unused ones; returns the physical id of each
// logical block and fills c.block_len (unused slots get a full length: only the table keeps them out).
std::vector<int32_t> place_blocks(PagedCase& c, const std::vector<int32_t>& logical_len, int extra, std::mt19937& rng) {
    const int physical = static_cast<int>(logical_len.size()) + extra;
    std::vector<int32_t> slot(static_cast<size_t>(physical));
    std::iota(slot.begin(), slot.end(), 0);
    std::shuffle(slot.begin(), slot.end(), rng);
    c.block_len.assign(static_cast<size_t>(physical), c.block_size);
    std::vector<int32_t> ids(logical_len.size());
    for (size_t j = 0; j < logical_len.size(); ++j) {
        ids[j] = slot[j];
        c.block_len[static_cast<size_t>(slot[j])] = logical_len[j];
    }
    return ids;
}

// One table row per query block, every row listing every block (table_heads = 1).
void dense_table(PagedCase& c, const std::vector<int32_t>& ids) {
    c.table_heads = 1;
    c.indptr = {0};
    c.indices.clear();
    for (int qb = 0; qb < c.q_blocks(); ++qb) {
        c.indices.insert(c.indices.end(), ids.begin(), ids.end());
        c.indptr.push_back(static_cast<int32_t>(c.indices.size()));
    }
}

// Per (head, query block): a random subset (about `keep`) of the blocks in random order; row `empty_row` empty.
void sparse_table(PagedCase& c, const std::vector<int32_t>& ids, double keep, int empty_row, std::mt19937& rng) {
    c.table_heads = c.heads;
    c.indptr = {0};
    c.indices.clear();
    std::bernoulli_distribution take(keep);
    for (int r = 0; r < c.heads * c.q_blocks(); ++r) {
        if (r != empty_row) {
            std::vector<int32_t> row;
            for (int32_t id : ids) {
                if (take(rng)) row.push_back(id);
            }
            if (row.empty()) row.push_back(ids[static_cast<size_t>(r) % ids.size()]);
            std::shuffle(row.begin(), row.end(), rng);
            c.indices.insert(c.indices.end(), row.begin(), row.end());
        }
        c.indptr.push_back(static_cast<int32_t>(c.indices.size()));
    }
}

struct HostData {
    std::vector<uint16_t> q, k, v;  // bf16 bits
};

// Random q (std 1.5, every slot) and pools: valid tokens of valid blocks random (k std 1.5, v std 1), every
// other pool slot NaN. q and k are wide enough that softmax is peaked, so a wrong key changes the output.
HostData random_data(const PagedCase& c, std::mt19937& rng) {
    HostData d;
    std::normal_distribution<float> qk(0.0f, 1.5f), vd(0.0f, 1.0f);
    d.q.resize(static_cast<size_t>(c.q_len * c.q_stride()));
    for (auto& x : d.q) x = f32_to_bf16_bits(qk(rng));
    const auto pool = static_cast<size_t>(static_cast<int64_t>(c.block_len.size()) * c.block_stride());
    d.k.assign(pool, kNaNBits);
    d.v.assign(pool, kNaNBits);
    for (size_t b = 0; b < c.block_len.size(); ++b) {
        for (int t = 0; t < c.block_len[b]; ++t) {
            const int64_t off = static_cast<int64_t>(b) * c.block_stride() + t * c.kv_stride();
            for (int64_t e = 0; e < c.width(); ++e) {
                d.k[static_cast<size_t>(off + e)] = f32_to_bf16_bits(qk(rng));
                d.v[static_cast<size_t>(off + e)] = f32_to_bf16_bits(vd(rng));
            }
        }
    }
    return d;
}

PagedAttentionParams params_of(const PagedCase& c) {
    PagedAttentionParams p;
    p.q_row_stride = c.q_row_stride;
    p.out_row_stride = c.out_row_stride;
    p.kv_row_stride = c.kv_row_stride;
    p.kv_block_stride = c.kv_block_stride;
    p.table_heads = c.table_heads;
    p.q_len = c.q_len;
    p.heads = c.heads;
    p.head_dim = c.head_dim;
    p.block_size = c.block_size;
    p.scale = c.scale;
    return p;
}

// The CPU reference's output: [q_len + 3 guard rows, out_stride] bf16, untouched slots kGuardBits.
std::vector<uint16_t> run_cpu(const PagedCase& c, const HostData& d) {
    std::vector<uint16_t> out(static_cast<size_t>((c.q_len + 3) * c.out_stride()), kGuardBits);
    PagedAttentionParams p = params_of(c);
    p.q = d.q.data();
    p.k = d.k.data();
    p.v = d.v.data();
    p.out = out.data();
    p.block_len = c.block_len.data();
    p.indptr = c.indptr.data();
    p.indices = c.indices.data();
    paged_attention_cpu(p);
    return out;
}

// Rows in [0, q_len) within the heads * head_dim columns are compared with the bound; everything else (the
// row gaps of a strided out, the guard rows) must still hold kGuardBits. Empty table rows must be zeros.
void expect_matches_cpu(const PagedCase& c, const std::vector<uint16_t>& want, const std::vector<uint16_t>& got,
                        int empty_row = -1) {
    ASSERT_EQ(got.size(), want.size());
    int64_t bad = 0, guard_bad = 0, nonzero_empty = 0;
    double max_err = 0.0;
    for (int64_t i = 0; i < c.q_len + 3; ++i) {
        for (int64_t e = 0; e < c.out_stride(); ++e) {
            const size_t at = static_cast<size_t>(i * c.out_stride() + e);
            if (i >= c.q_len || e >= c.width()) {
                guard_bad += got[at] != kGuardBits;
                continue;
            }
            const float w = bf16_bits_to_f32(want[at]), g = bf16_bits_to_f32(got[at]);
            const float err = std::fabs(g - w);
            if (!(err <= 2e-2f * std::fabs(w) + 2e-3f)) {
                if (++bad <= 5) {
                    ADD_FAILURE() << "row " << i << " head " << e / c.head_dim << " dim " << e % c.head_dim << ": cpu "
                                  << w << ", gpu " << g;
                }
            }
            if (err == err) max_err = std::max(max_err, static_cast<double>(err));
            const int64_t h = e / c.head_dim;
            const int64_t table_row = (c.table_heads == 1 ? 0 : h) * c.q_blocks() + i / 128;
            if (table_row == empty_row) nonzero_empty += got[at] != 0 || want[at] != 0;
        }
    }
    EXPECT_EQ(bad, 0) << "max |gpu - cpu| " << max_err;
    EXPECT_EQ(guard_bad, 0) << "slots outside the output written";
    EXPECT_EQ(nonzero_empty, 0) << "an empty table row must give zeros";
}

#ifdef LONGROLL_HAS_CUDA
std::vector<uint16_t> run_gpu(const PagedCase& c, const HostData& d) {
    auto bytes = [](const auto& v) { return v.size() * sizeof(v[0]); };
    const DeviceBuffer dq = test::to_device(d.q.data(), bytes(d.q));
    const DeviceBuffer dk = test::to_device(d.k.data(), bytes(d.k));
    const DeviceBuffer dv = test::to_device(d.v.data(), bytes(d.v));
    const DeviceBuffer dlen = test::to_device(c.block_len.data(), bytes(c.block_len));
    const DeviceBuffer dptr = test::to_device(c.indptr.data(), bytes(c.indptr));
    // An empty table still needs a valid pointer.
    const std::vector<int32_t> indices = c.indices.empty() ? std::vector<int32_t>{0} : c.indices;
    const DeviceBuffer didx = test::to_device(indices.data(), bytes(indices));
    const std::vector<uint16_t> init(static_cast<size_t>((c.q_len + 3) * c.out_stride()), kGuardBits);
    const DeviceBuffer dout = test::to_device(init.data(), bytes(init));
    PagedAttentionParams p = params_of(c);
    p.q = dq.data();
    p.k = dk.data();
    p.v = dv.data();
    p.out = dout.data();
    p.block_len = static_cast<const int32_t*>(dlen.data());
    p.indptr = static_cast<const int32_t*>(dptr.data());
    p.indices = static_cast<const int32_t*>(didx.data());
    launch_paged_attention(p, nullptr);
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    return test::to_host<uint16_t>(dout, init.size());
}

void check_case(const PagedCase& c, std::mt19937& rng, int empty_row = -1) {
    const HostData d = random_data(c, rng);
    const std::vector<uint16_t> want = run_cpu(c, d);
    const std::vector<uint16_t> got = run_gpu(c, d);
    expect_matches_cpu(c, want, got, empty_row);
}
#endif

TEST(PagedAttentionGpu, DenseHead128ShortLastBlocks) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::mt19937 rng(11);
    PagedCase c;
    c.heads = 12;
    c.head_dim = 128;
    c.block_size = 128;
    c.q_len = 300;  // 2 full query blocks and one of 44 rows
    // 1560 = 12 * 128 + 24 tokens per frame (480p): every 13th block holds 24 tokens.
    const auto ids = place_blocks(c, frame_blocks(2, 1560, 128), 3, rng);
    dense_table(c, ids);
    check_case(c, rng);
#endif
}

TEST(PagedAttentionGpu, SparsePerHeadTableStridedRowsEmptyRow) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::mt19937 rng(12);
    PagedCase c;
    c.heads = 12;
    c.head_dim = 128;
    c.block_size = 128;
    c.q_len = 333;
    c.q_row_stride = 3 * 12 * 128;                        // q inside a fused qkv buffer
    c.out_row_stride = 12 * 128 + 64;                     // gaps the kernel must leave alone
    c.kv_row_stride = 12 * 128 + 8;                       // 16 bytes of slack per token
    c.kv_block_stride = 128 * c.kv_row_stride + 3 * 128;  // and between blocks
    const auto ids = place_blocks(c, frame_blocks(3, 1560, 128), 4, rng);
    const int empty_row = 3 * c.q_blocks() + 1;  // head 3, query block 1
    sparse_table(c, ids, 0.4, empty_row, rng);
    check_case(c, rng, empty_row);
#endif
}

TEST(PagedAttentionGpu, Head128Block64ExactQueryBlockCustomScale) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::mt19937 rng(13);
    PagedCase c;
    c.heads = 4;
    c.head_dim = 128;
    c.block_size = 64;
    c.q_len = 256;
    c.scale = 0.05f;
    const auto ids = place_blocks(c, frame_blocks(5, 100, 64), 2, rng);  // blocks of 64 and 36 tokens
    dense_table(c, ids);
    check_case(c, rng);
#endif
}

TEST(PagedAttentionGpu, Head128Block256PartialSubTilesPerHeadTable) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    // Blocks of 256 tokens: 1000 = 3 x 256 + 232 per frame, so the last block ends 40 keys into its fourth
    // 64-key sub-tile; plus a block of 70 (a full sub-tile and one of 6) and an empty one. Per-head random
    // tables give odd sub-tile counts (a last tile of one sub-tile) and many blocks per row; q_len is odd.
    std::mt19937 rng(18);
    PagedCase c;
    c.heads = 5;
    c.head_dim = 128;
    c.block_size = 256;
    c.q_len = 389;
    c.kv_row_stride = 5 * 128 + 16;
    std::vector<int32_t> lens = frame_blocks(3, 1000, 256);
    lens.push_back(70);
    lens.push_back(0);
    const auto ids = place_blocks(c, lens, 2, rng);
    sparse_table(c, ids, 0.7, -1, rng);
    check_case(c, rng);
#endif
}

TEST(PagedAttentionGpu, Head128FullWaveUnsplit) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    // 11 query blocks x 12 heads = 132 CTAs, one full wave on an H100: the launch does not split the table
    // rows over two CTAs here (the smaller cases above are split), so both paths are checked.
    std::mt19937 rng(19);
    PagedCase c;
    c.heads = 12;
    c.head_dim = 128;
    c.block_size = 128;
    c.q_len = 11 * 128 - 5;
    const auto ids = place_blocks(c, frame_blocks(1, 1560, 128), 2, rng);
    dense_table(c, ids);
    check_case(c, rng);
#endif
}

TEST(PagedAttentionGpu, CrossAttentionLayout) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    // The prompt's 512 text keys [512, heads, 128] read as a pool of 4 contiguous blocks of 128.
    std::mt19937 rng(14);
    PagedCase c;
    c.heads = 12;
    c.head_dim = 128;
    c.block_size = 128;
    c.q_len = 200;
    c.block_len.assign(4, 128);
    dense_table(c, {0, 1, 2, 3});
    check_case(c, rng);
#endif
}

TEST(PagedAttentionGpu, Head32GenericKernel) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::mt19937 rng(15);
    PagedCase c;
    c.heads = 2;
    c.head_dim = 32;
    c.block_size = 64;
    c.q_len = 70;
    const auto ids = place_blocks(c, frame_blocks(5, 32, 64), 2, rng);  // 32 valid tokens per block
    dense_table(c, ids);
    check_case(c, rng);
#endif
}

TEST(PagedAttentionGpu, GenericKernelOddBlockSizeSparseTable) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    std::mt19937 rng(16);
    PagedCase c;
    c.heads = 3;
    c.head_dim = 96;  // 3 pairs per lane for some lanes, 1 for others
    c.block_size = 48;
    c.q_len = 300;
    c.q_row_stride = 3 * 96 + 2;
    c.out_row_stride = 3 * 96 + 6;
    const auto ids = place_blocks(c, frame_blocks(4, 130, 48), 3, rng);  // 48, 48, 34
    const int empty_row = 2 * c.q_blocks() + 2;                          // head 2, query block 2
    sparse_table(c, ids, 0.5, empty_row, rng);
    check_case(c, rng, empty_row);
#endif
}

// Not a GPU test: the CPU reference against attention_cpu (fp32, contiguous keys) on the keys a dense table
// gathers, so the reference the kernels are held to is itself checked.
TEST(PagedAttentionGpu, CpuReferenceMatchesDenseAttentionOnGatheredKeys) {
    std::mt19937 rng(17);
    PagedCase c;
    c.heads = 3;
    c.head_dim = 128;
    c.block_size = 128;
    c.q_len = 150;
    const auto ids = place_blocks(c, frame_blocks(2, 300, 128), 2, rng);  // 128, 128, 44 per frame
    dense_table(c, ids);
    const HostData d = random_data(c, rng);
    const std::vector<uint16_t> paged = run_cpu(c, d);

    const int64_t w = c.width();
    std::vector<float> q(static_cast<size_t>(c.q_len * w)), k, v;
    for (int64_t i = 0; i < c.q_len; ++i) {
        for (int64_t e = 0; e < w; ++e) q[static_cast<size_t>(i * w + e)] = bf16_bits_to_f32(d.q[i * c.q_stride() + e]);
    }
    for (int32_t b : ids) {
        for (int t = 0; t < c.block_len[static_cast<size_t>(b)]; ++t) {
            const int64_t off = b * c.block_stride() + t * c.kv_stride();
            for (int64_t e = 0; e < w; ++e) {
                k.push_back(bf16_bits_to_f32(d.k[static_cast<size_t>(off + e)]));
                v.push_back(bf16_bits_to_f32(d.v[static_cast<size_t>(off + e)]));
            }
        }
    }
    std::vector<float> want(q.size());
    AttentionParams a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.out = want.data();
    a.q_len = c.q_len;
    a.kv_len = static_cast<int64_t>(k.size()) / w;
    a.heads = c.heads;
    a.head_dim = c.head_dim;
    attention_cpu(a);
    ASSERT_EQ(a.kv_len, 2 * 300);

    int64_t bad = 0;
    for (int64_t i = 0; i < c.q_len; ++i) {
        for (int64_t e = 0; e < w; ++e) {
            const float x = want[static_cast<size_t>(i * w + e)];
            const float y = bf16_bits_to_f32(paged[static_cast<size_t>(i * c.out_stride() + e)]);
            // bf16 rounding of the output (2^-9 relative) plus fp32 summation order.
            if (!(std::fabs(x - y) <= 4e-3f * std::fabs(x) + 1e-5f) && ++bad <= 5) {
                ADD_FAILURE() << "row " << i << " col " << e << ": attention_cpu " << x << ", paged cpu " << y;
            }
        }
    }
    EXPECT_EQ(bad, 0);
}

TEST(PagedAttentionGpu, RejectsBadParameters) {
    const std::vector<uint16_t> in(4096, f32_to_bf16_bits(1.0f));
    std::vector<uint16_t> out(128, kGuardBits);
    const int32_t zero[2] = {0, 0};
    PagedAttentionParams p;
    p.q = p.k = p.v = in.data();
    p.out = out.data();
    p.block_len = p.indptr = p.indices = zero;
    p.q_len = 1;
    p.heads = 1;
    p.head_dim = 128;
    p.block_size = 64;
    EXPECT_NO_THROW(paged_attention_cpu(p));  // empty table: zeros
    EXPECT_EQ(out[0], 0);
    EXPECT_EQ(out[127], 0);

    auto rejects = [&](auto change) {
        PagedAttentionParams bad = p;
        change(bad);
        EXPECT_THROW(resolve_paged_attention_params(bad), InputError);
    };
    rejects([](PagedAttentionParams& x) { x.q_block = 64; });
    rejects([](PagedAttentionParams& x) { x.block_size = 96; });  // head_dim 128 needs multiples of 64
    rejects([](PagedAttentionParams& x) { x.head_dim = 33; });
    rejects([](PagedAttentionParams& x) { x.head_dim = 258; });
    rejects([](PagedAttentionParams& x) { x.table_heads = 2; });
    rejects([](PagedAttentionParams& x) { x.kv_row_stride = 100; });  // < heads * head_dim
    rejects([](PagedAttentionParams& x) { x.q_row_stride = 132; });   // not a multiple of 8 for head_dim 128
    rejects([](PagedAttentionParams& x) { x.scale = -1.0f; });
    rejects([](PagedAttentionParams& x) { x.indices = nullptr; });
}

}  // namespace
}  // namespace lr
