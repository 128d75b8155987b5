// The sparse step's small ops (kernels/sparse_step.h) against their definitions computed here.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cast.h"
#include "kernels/sparse_step.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace lr {
namespace {

TEST(SparseStepOps, CopyHeadBlocksMovesOneHeadSliceOfKAndVAndItsMean) {
    const int64_t L = 2, P = 5, B = 3, H = 2, D = 4, W = H * D;
    const size_t pool = static_cast<size_t>(P * B * W);
    std::vector<uint16_t> pools(2 * L * pool);  // per layer: K then V
    for (size_t i = 0; i < pools.size(); ++i) pools[i] = static_cast<uint16_t>(i % 50000);
    std::vector<float> kmean = test::random_vector(L * P * W, 3);
    const std::vector<uint16_t> before = pools;
    const std::vector<float> kbefore = kmean;
    const std::vector<int32_t> entries = {1, 0, 2, 4, 0, 1, 0, 3};  // (layer, head, src, dst)
    CopyHeadBlocksParams p;
    p.pools = pools.data();
    p.layer_stride = 2 * pool * 2;
    p.v_offset = pool * 2;
    p.kmean = kmean.data();
    p.pool_blocks = P;
    p.block_size = B;
    p.heads = H;
    p.head_dim = D;
    p.entries = entries.data();
    p.n = 2;
    copy_head_blocks_cpu(p);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t which = 0; which < 2; ++which)
            for (int64_t b = 0; b < P; ++b)
                for (int64_t t = 0; t < B; ++t)
                    for (int64_t h = 0; h < H; ++h)
                        for (int64_t d = 0; d < D; ++d) {
                            const auto at = [&](int64_t blk) {
                                return static_cast<size_t>((2 * l + which) * static_cast<int64_t>(pool) +
                                                           (blk * B + t) * W + h * D + d);
                            };
                            int64_t src = b;
                            if (l == 1 && h == 0 && b == 4) src = 2;
                            if (l == 0 && h == 1 && b == 3) src = 0;
                            EXPECT_EQ(pools[at(b)], before[at(src)]);
                        }
    for (int64_t l = 0; l < L; ++l)
        for (int64_t b = 0; b < P; ++b)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t d = 0; d < D; ++d) {
                    int64_t src = b;
                    if (l == 1 && h == 0 && b == 4) src = 2;
                    if (l == 0 && h == 1 && b == 3) src = 0;
                    EXPECT_EQ(kmean[static_cast<size_t>(((l * P) + b) * W + h * D + d)],
                              kbefore[static_cast<size_t>(((l * P) + src) * W + h * D + d)]);
                }
}

TEST(SparseStepOps, ChangeIsOneMinusCosineAndSalienceTheBestPooledScore) {
    const int64_t L = 2, P = 4, H = 3, D = 5, W = H * D, Q = 3;
    const std::vector<float> kmean = test::random_vector(L * P * W, 7);
    const std::vector<float> qmean = test::random_vector(L * H * Q * D, 8);
    const std::vector<int32_t> ce = {0, 1, 0, 1, 3, 2, 1, 2, -1};
    std::vector<float> change(static_cast<size_t>(L * P * H), -5.0f);
    block_change_cpu({kmean.data(), change.data(), P, H, D, ce.data(), 3});
    const auto km = [&](int64_t l, int64_t b, int64_t h) { return kmean.data() + (l * P + b) * W + h * D; };
    for (int64_t e = 0; e < 3; ++e)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t l = ce[static_cast<size_t>(3 * e)], b = ce[static_cast<size_t>(3 * e + 1)],
                          prev = ce[static_cast<size_t>(3 * e + 2)];
            double want = 0;
            if (prev >= 0) {
                double ab = 0, aa = 0, bb = 0;
                for (int64_t d = 0; d < D; ++d) {
                    ab += km(l, b, h)[d] * km(l, prev, h)[d];
                    aa += km(l, b, h)[d] * km(l, b, h)[d];
                    bb += km(l, prev, h)[d] * km(l, prev, h)[d];
                }
                want = 1.0 - ab / std::sqrt(aa * bb);
            }
            EXPECT_NEAR(change[static_cast<size_t>((l * P + b) * H + h)], want, 1e-6);
        }
    const std::vector<int32_t> se = {0, 3, 1, 0};
    std::vector<float> sal(static_cast<size_t>(2 * H));
    BlockSalienceParams sp;
    sp.qmean = qmean.data();
    sp.max_q_blocks = Q;
    sp.num_q_blocks = Q;
    sp.kmean = kmean.data();
    sp.pool_blocks = P;
    sp.heads = H;
    sp.head_dim = D;
    sp.entries = se.data();
    sp.n = 2;
    sp.out = sal.data();
    block_salience_cpu(sp);
    for (int64_t e = 0; e < 2; ++e)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t l = se[static_cast<size_t>(2 * e)], b = se[static_cast<size_t>(2 * e + 1)];
            double best = -1e30;
            for (int64_t q = 0; q < Q; ++q) {
                double s = 0;
                for (int64_t d = 0; d < D; ++d)
                    s += qmean[static_cast<size_t>(((l * H + h) * Q + q) * D + d)] * km(l, b, h)[d];
                best = std::max(best, s);
            }
            EXPECT_NEAR(sal[static_cast<size_t>(e * H + h)], best, 1e-5);
        }
}

}  // namespace
}  // namespace lr
