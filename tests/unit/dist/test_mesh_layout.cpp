// Mesh layout validation and rank coordinates: pure functions, no MPI.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "dist/fault.h"
#include "dist/mesh.h"

namespace lr {
namespace {

// 1.3B at 480p, chunks of 3 frames: 4680 rows, 37 query blocks of 128
const MeshShape k13b480{.num_heads = 12, .tokens_per_frame = 1560, .chunk_frames = 3};

std::string layout_error(const MeshRequest& r, int world, const MeshShape& shape = k13b480) {
    try {
        resolve_mesh_layout(r, world, shape);
    } catch (const CollectiveInputError& e) {
        EXPECT_EQ(e.exit_code(), 2);
        return e.what();
    }
    return "";
}

TEST(MeshLayout, ResolvesDataParallelFromWorld) {
    const MeshLayout l = resolve_mesh_layout({.ulysses = 2, .spatial = 2}, 8, k13b480);
    EXPECT_EQ(l, (MeshLayout{8, 2, 2, 2, 0}));
    EXPECT_EQ(l.group_size(), 4);
    EXPECT_EQ(describe(l), "8 ranks = 2 data-parallel groups x (ulysses 2 x spatial 2 + 0 VAE ranks)");
}

TEST(MeshLayout, DedicatedVaeRanksJoinTheGroup) {
    const MeshLayout l = resolve_mesh_layout({.ulysses = 2, .dedicated_vae = true, .vae_ranks = 1}, 6, k13b480);
    EXPECT_EQ(l, (MeshLayout{6, 2, 2, 1, 1}));
}

TEST(MeshLayout, RefusesMoreVaeRanksThanLatentRows) {
    const MeshShape rows60{.num_heads = 12, .tokens_per_frame = 1560, .chunk_frames = 3, .latent_rows = 60};  // 480p
    EXPECT_EQ(layout_error({.dedicated_vae = true, .vae_ranks = 60}, 61, rows60), "");
    EXPECT_NE(layout_error({.dedicated_vae = true, .vae_ranks = 61}, 62, rows60)
                  .find("parallel.vae_ranks=61 exceeds the 60 rows of a latent frame"),
              std::string::npos);
}

TEST(MeshLayout, RefusesUlyssesNotDividingHeads) {
    EXPECT_NE(layout_error({.ulysses = 5}, 5).find("parallel.ulysses=5 does not divide the 12 attention heads"),
              std::string::npos);
    EXPECT_EQ(layout_error({.ulysses = 8}, 8, {.num_heads = 40, .tokens_per_frame = 1560, .chunk_frames = 3})
                  .find("parallel.ulysses=8"),
              std::string::npos)
        << "40 heads split 8 ways is fine";
}

TEST(MeshLayout, RefusesSpatialBeyondQueryBlocksPerChunk) {
    // Brute force: deal the chunk's rows in blocks of 128 and count the blocks.
    int64_t blocks = 0;
    for (int64_t row = 0; row < 3 * 1560; row += 128) ++blocks;
    ASSERT_EQ(blocks, 37);
    EXPECT_EQ(query_blocks_per_chunk(k13b480), blocks);
    EXPECT_NE(layout_error({.spatial = 38}, 38)
                  .find("parallel.spatial=38 exceeds the 37 query blocks of a chunk (3 "
                        "frames of 1560 tokens in blocks of 128 rows)"),
              std::string::npos);
    EXPECT_EQ(layout_error({.spatial = 37}, 37), "");
    // One-frame chunks hold 13 blocks; a 128x64 video's 3 frames of 32 tokens, one.
    const MeshShape one_frame{.num_heads = 12, .tokens_per_frame = 1560, .chunk_frames = 1};
    EXPECT_NE(layout_error({.spatial = 14}, 14, one_frame).find("exceeds the 13 query blocks"), std::string::npos);
    EXPECT_EQ(layout_error({.spatial = 13}, 13, one_frame), "");
    const MeshShape tiny{.num_heads = 2, .tokens_per_frame = 32, .chunk_frames = 3};
    EXPECT_NE(layout_error({.spatial = 2}, 2, tiny).find("every spatial rank needs a block"), std::string::npos);
}

TEST(MeshLayout, RefusesWorldNotMatchingGroups) {
    EXPECT_NE(layout_error({.ulysses = 2, .spatial = 2}, 6).find("6 ranks are not a multiple of a group of 4 ranks"),
              std::string::npos);
    EXPECT_NE(layout_error({.ulysses = 2, .data_parallel = 3}, 4).find("parallel.data_parallel=3 x a group of 2 ranks"),
              std::string::npos);
    EXPECT_NE(layout_error({.ulysses = 2, .data_parallel = 3}, 4).find("needs 6 ranks, but the job has 4"),
              std::string::npos);
    EXPECT_EQ(layout_error({.ulysses = 2, .data_parallel = 2}, 4), "");
}

TEST(MeshLayout, RefusesNonsenseValues) {
    EXPECT_NE(layout_error({.ulysses = 0}, 1).find("parallel.ulysses=0 must be at least 1"), std::string::npos);
    EXPECT_NE(layout_error({.spatial = -1}, 1).find("parallel.spatial=-1"), std::string::npos);
    EXPECT_NE(layout_error({.data_parallel = -2}, 1).find("parallel.data_parallel=-2"), std::string::npos);
    EXPECT_NE(layout_error({.vae_ranks = 1}, 2).find("parallel.vae_ranks=1 needs the VAE on dedicated ranks"),
              std::string::npos);
    EXPECT_NE(layout_error({.dedicated_vae = true}, 2).find("needs parallel.vae_ranks >= 1"), std::string::npos);
}

TEST(MeshCoord, CoversEveryRankOnceUlyssesInnermost) {
    const MeshLayout l =
        resolve_mesh_layout({.ulysses = 2, .spatial = 3, .dedicated_vae = true, .vae_ranks = 2}, 16, k13b480);
    ASSERT_EQ(l.data_parallel, 2);
    std::set<std::tuple<int, int, int>> dit;
    int vae = 0;
    for (int r = 0; r < l.world; ++r) {
        const MeshCoord c = mesh_coord(l, r);
        EXPECT_EQ(c.dp_group, r / 8);
        EXPECT_EQ(c.group_rank, r % 8);
        if (c.role == MeshRole::kDit) {
            EXPECT_EQ(c.ulysses_index, c.group_rank % 2);
            EXPECT_EQ(c.spatial_index, c.group_rank / 2);
            EXPECT_EQ(c.sp_rank, c.group_rank);
            EXPECT_EQ(c.vae_index, -1);
            EXPECT_EQ(mesh_dit_world_rank(l, c.dp_group, c.ulysses_index, c.spatial_index), r);
            EXPECT_TRUE(dit.insert({c.dp_group, c.ulysses_index, c.spatial_index}).second);
        } else {
            EXPECT_EQ(c.vae_index, c.group_rank - 6);
            EXPECT_EQ(c.ulysses_index, -1);
            ++vae;
        }
    }
    EXPECT_EQ(dit.size(), 12u);
    EXPECT_EQ(vae, 4);
}

}  // namespace
}  // namespace lr
