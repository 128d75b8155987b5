// CUDA paged attention with a block length per (block, head) (block_len_heads = heads) on policy-shaped per-head
// tables, against paged_attention_cpu: very uneven rows (empty, 1 block, 300 blocks, a few dozen), blocks whose
// length differs per head (full, short, a single token, empty for some heads), retained blocks shared by rows.
// Pool slots past a block's length for a head hold NaN in that head's columns, so a kernel that reads a masked
// key of one head (or takes another head's length) fails. head_dim 128 runs the TMA kernel (split and unsplit
// table rows), head_dim 32 the generic one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/paged_attention.h"
#include "runtime/core/dtype.h"

namespace lr {
namespace {

constexpr uint16_t kNaNBits = 0x7fc0;
constexpr uint16_t kGuardBits = 0x4242;

struct HeadsCase {
    int heads = 0, head_dim = 0, block_size = 0, q_len = 0, blocks = 0;
    std::vector<int32_t> block_len;  // [blocks, heads]
    std::vector<int32_t> indptr;     // [heads * q_blocks + 1]
    std::vector<int32_t> indices;
    std::vector<uint16_t> q, k, v;  // bf16 bits, dense strides
    int64_t width() const { return static_cast<int64_t>(heads) * head_dim; }
    int q_blocks() const { return (q_len + 127) / 128; }
};

// Row lengths cycle through `pattern` (0 = empty, else that many distinct random blocks); lengths per (block,
// head): mostly full, some short, some one token, some empty.
HeadsCase make_case(int heads, int head_dim, int block_size, int q_len, int blocks, const std::vector<int>& pattern,
                    uint32_t seed) {
    std::mt19937 rng(seed);
    HeadsCase c;
    c.heads = heads;
    c.head_dim = head_dim;
    c.block_size = block_size;
    c.q_len = q_len;
    c.blocks = blocks;
    c.block_len.resize(static_cast<size_t>(blocks) * heads);
    std::uniform_int_distribution<int> kind(0, 9), short_len(1, block_size - 1);
    for (auto& len : c.block_len) {
        const int k = kind(rng);
        len = k < 6 ? block_size : k < 8 ? short_len(rng) : k < 9 ? 1 : 0;
    }
    c.indptr = {0};
    std::vector<int32_t> all(static_cast<size_t>(blocks));
    std::iota(all.begin(), all.end(), 0);
    for (int r = 0; r < heads * c.q_blocks(); ++r) {
        const int n = std::min(pattern[static_cast<size_t>(r) % pattern.size()], blocks);
        std::shuffle(all.begin(), all.end(), rng);
        c.indices.insert(c.indices.end(), all.begin(), all.begin() + n);
        c.indptr.push_back(static_cast<int32_t>(c.indices.size()));
    }
    std::normal_distribution<float> qk(0.0f, 1.5f), vd(0.0f, 1.0f);
    c.q.resize(static_cast<size_t>(q_len * c.width()));
    for (auto& x : c.q) x = f32_to_bf16_bits(qk(rng));
    const size_t pool = static_cast<size_t>(blocks) * block_size * c.width();
    c.k.assign(pool, kNaNBits);
    c.v.assign(pool, kNaNBits);
    for (int b = 0; b < blocks; ++b) {
        for (int h = 0; h < heads; ++h) {
            for (int t = 0; t < c.block_len[static_cast<size_t>(b) * heads + h]; ++t) {
                const size_t off = (static_cast<size_t>(b) * block_size + t) * c.width() + h * head_dim;
                for (int d = 0; d < head_dim; ++d) {
                    c.k[off + d] = f32_to_bf16_bits(qk(rng));
                    c.v[off + d] = f32_to_bf16_bits(vd(rng));
                }
            }
        }
    }
    return c;
}

PagedAttentionParams params_of(const HeadsCase& c) {
    PagedAttentionParams p;
    p.table_heads = c.heads;
    p.block_len_heads = c.heads;
    p.q_len = c.q_len;
    p.heads = c.heads;
    p.head_dim = c.head_dim;
    p.block_size = c.block_size;
    return p;
}

std::vector<uint16_t> run_cpu(const HeadsCase& c) {
    std::vector<uint16_t> out(static_cast<size_t>(c.q_len * c.width()), kGuardBits);
    PagedAttentionParams p = params_of(c);
    p.q = c.q.data();
    p.k = c.k.data();
    p.v = c.v.data();
    p.out = out.data();
    p.block_len = c.block_len.data();
    p.indptr = c.indptr.data();
    p.indices = c.indices.data();
    paged_attention_cpu(p);
    return out;
}

#ifdef LONGROLL_HAS_CUDA
std::vector<uint16_t> run_gpu(const HeadsCase& c) {
    auto bytes = [](const auto& v) { return v.size() * sizeof(v[0]); };
    const DeviceBuffer dq = test::to_device(c.q.data(), bytes(c.q));
    const DeviceBuffer dk = test::to_device(c.k.data(), bytes(c.k));
    const DeviceBuffer dv = test::to_device(c.v.data(), bytes(c.v));
    const DeviceBuffer dlen = test::to_device(c.block_len.data(), bytes(c.block_len));
    const DeviceBuffer dptr = test::to_device(c.indptr.data(), bytes(c.indptr));
    const std::vector<int32_t> indices = c.indices.empty() ? std::vector<int32_t>{0} : c.indices;
    const DeviceBuffer didx = test::to_device(indices.data(), bytes(indices));
    const std::vector<uint16_t> init(static_cast<size_t>(c.q_len * c.width()), kGuardBits);
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
#endif

// The bound of test_paged_attention_gpu.cpp (bf16 output, P rounded to bf16 on the tensor-core path); rows whose
// table is empty, or reads no valid key of the head, must be zeros on both sides.
void check(const HeadsCase& c) {
    LR_REQUIRE_GPU();
#ifdef LONGROLL_HAS_CUDA
    const std::vector<uint16_t> want = run_cpu(c);
    const std::vector<uint16_t> got = run_gpu(c);
    int64_t bad = 0, zero_rows_bad = 0, empty_rows = 0;
    double max_err = 0.0;
    for (int64_t i = 0; i < c.q_len; ++i) {
        for (int h = 0; h < c.heads; ++h) {
            const int64_t row = static_cast<int64_t>(h) * c.q_blocks() + i / 128;
            int64_t keys = 0;
            for (int32_t e = c.indptr[static_cast<size_t>(row)]; e < c.indptr[static_cast<size_t>(row + 1)]; ++e)
                keys += c.block_len[static_cast<size_t>(c.indices[static_cast<size_t>(e)]) * c.heads + h];
            empty_rows += keys == 0 && i % 128 == 0;
            for (int d = 0; d < c.head_dim; ++d) {
                const size_t at = static_cast<size_t>(i * c.width() + h * c.head_dim + d);
                const float w = bf16_bits_to_f32(want[at]), g = bf16_bits_to_f32(got[at]);
                if (keys == 0) {
                    zero_rows_bad += want[at] != 0 || got[at] != 0;
                    continue;
                }
                const float err = std::fabs(g - w);
                if (err == err) max_err = std::max(max_err, static_cast<double>(err));
                if (!(err <= 2e-2f * std::fabs(w) + 2e-3f) && ++bad <= 5) {
                    ADD_FAILURE() << "row " << i << " head " << h << " dim " << d << ": cpu " << w << ", gpu " << g;
                }
            }
        }
    }
    EXPECT_EQ(bad, 0) << "max |gpu - cpu| " << max_err;
    EXPECT_EQ(zero_rows_bad, 0) << "a table row without a valid key must give zeros";
    std::printf("  %d table rows (%lld without a key), %zu entries, max |gpu - cpu| %.3g\n", c.heads * c.q_blocks(),
                static_cast<long long>(empty_rows), c.indices.size(), max_err);
#endif
}

TEST(PagedAttentionHeadsGpu, Head128UnevenPerHeadRowsSplit) {
    // 4 heads x 3 query blocks: 12 CTAs, so the rows are split over clusters of two.
    check(make_case(4, 128, 128, 300, 320, {0, 1, 300, 7, 40, 300, 1, 2, 120, 0, 300, 15}, 31));
}

TEST(PagedAttentionHeadsGpu, Head128Block64Uneven) {
    check(make_case(3, 128, 64, 256, 310, {300, 0, 1, 33, 300, 5}, 32));
}

TEST(PagedAttentionHeadsGpu, Head128FullWaveUnsplit) {
    // 12 heads x 11 query blocks = 132 CTAs: unsplit rows on an H100; mostly short rows, two of 300 blocks.
    std::vector<int> pattern(132);
    std::mt19937 rng(33);
    for (auto& n : pattern) n = static_cast<int>(rng() % 24);
    pattern[5] = 300;
    pattern[77] = 300;
    pattern[9] = 0;
    pattern[10] = 1;
    check(make_case(12, 128, 128, 11 * 128 - 5, 300, pattern, 34));
}

TEST(PagedAttentionHeadsGpu, Head32GenericKernel) { check(make_case(4, 32, 48, 300, 310, {0, 1, 300, 9, 60, 2}, 35)); }

}  // namespace
}  // namespace lr
