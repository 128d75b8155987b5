#include "dist/mesh.h"

#include "dist/fault.h"

namespace lr {
namespace {

// A CollectiveInputError: the same text on every rank.
template <typename... Args>
void layout_check(bool ok, const Args&... args) {
    if (!ok) [[unlikely]]
        throw CollectiveInputError(str_cat("impossible parallel layout: ", args...));
}

}  // namespace

int query_blocks_per_chunk(const MeshShape& shape) {
    if (shape.q_block <= 0 || shape.chunk_frames <= 0) return 0;
    const int64_t rows = static_cast<int64_t>(shape.chunk_frames) * shape.tokens_per_frame;
    return static_cast<int>((rows + shape.q_block - 1) / shape.q_block);
}

MeshLayout resolve_mesh_layout(const MeshRequest& r, int world_size, const MeshShape& shape) {
    LR_ASSERT(world_size >= 1, "world size ", world_size);
    LR_ASSERT(shape.num_heads > 0 && shape.tokens_per_frame > 0 && shape.chunk_frames > 0 && shape.q_block > 0,
              "mesh shape: heads ", shape.num_heads, ", tokens per frame ", shape.tokens_per_frame, ", chunk frames ",
              shape.chunk_frames, ", query block ", shape.q_block);
    layout_check(r.ulysses >= 1, "parallel.ulysses=", r.ulysses, " must be at least 1");
    layout_check(r.spatial >= 1, "parallel.spatial=", r.spatial, " must be at least 1");
    layout_check(r.data_parallel >= 0, "parallel.data_parallel=", r.data_parallel,
                 " must be 0 (as many groups as the ranks allow) or positive");
    layout_check(r.vae_ranks >= 0, "parallel.vae_ranks=", r.vae_ranks, " must not be negative");
    layout_check(r.dedicated_vae || r.vae_ranks == 0, "parallel.vae_ranks=", r.vae_ranks,
                 " needs the VAE on dedicated ranks (parallel.vae); with the VAE on the DiT ranks it must be 0");
    layout_check(!r.dedicated_vae || r.vae_ranks >= 1,
                 "the VAE on dedicated ranks needs parallel.vae_ranks >= 1, found ", r.vae_ranks);
    layout_check(shape.num_heads % r.ulysses == 0, "parallel.ulysses=", r.ulysses, " does not divide the ",
                 shape.num_heads, " attention heads");
    layout_check(
        !r.dedicated_vae || shape.latent_rows <= 0 || r.vae_ranks <= shape.latent_rows,
        "parallel.vae_ranks=", r.vae_ranks, " exceeds the ", shape.latent_rows,
        " rows of a latent frame (video.height / 8): the VAE ranks split the frame by rows, at least one each");
    // Spatial ranks are dealt the chunk's query blocks (dist/sharded_attention_step.h): a rank without one would
    // hold the window and compute nothing.
    const int blocks = query_blocks_per_chunk(shape);
    layout_check(r.spatial <= blocks, "parallel.spatial=", r.spatial, " exceeds the ", blocks,
                 " query blocks of a chunk (", shape.chunk_frames, " frames of ", shape.tokens_per_frame,
                 " tokens in blocks of ", shape.q_block, " rows): every spatial rank needs a block");
    MeshLayout l;
    l.world = world_size;
    l.ulysses = r.ulysses;
    l.spatial = r.spatial;
    l.vae_ranks = r.vae_ranks;
    const int group = l.group_size();
    const std::string group_text = str_cat("a group of ", group, " ranks (ulysses ", r.ulysses, " x spatial ",
                                           r.spatial, " + ", r.vae_ranks, " VAE ranks)");
    if (r.data_parallel > 0) {
        layout_check(static_cast<long long>(r.data_parallel) * group == world_size,
                     "parallel.data_parallel=", r.data_parallel, " x ", group_text, " needs ",
                     static_cast<long long>(r.data_parallel) * group, " ranks, but the job has ", world_size);
        l.data_parallel = r.data_parallel;
    } else {
        layout_check(world_size % group == 0, "the job's ", world_size, " ranks are not a multiple of ", group_text);
        l.data_parallel = world_size / group;
    }
    return l;
}

MeshCoord mesh_coord(const MeshLayout& l, int world_rank) {
    LR_ASSERT(world_rank >= 0 && world_rank < l.world, "rank ", world_rank, " outside the world of ", l.world);
    const int g = l.group_size();
    const int sp = l.sequence_parallel();
    MeshCoord c;
    c.dp_group = world_rank / g;
    c.group_rank = world_rank % g;
    if (c.group_rank < sp) {
        c.role = MeshRole::kDit;
        c.sp_rank = c.group_rank;
        c.ulysses_index = c.group_rank % l.ulysses;
        c.spatial_index = c.group_rank / l.ulysses;
    } else {
        c.role = MeshRole::kVae;
        c.vae_index = c.group_rank - sp;
    }
    return c;
}

int mesh_dit_world_rank(const MeshLayout& l, int dp_group, int ulysses_index, int spatial_index) {
    return dp_group * l.group_size() + spatial_index * l.ulysses + ulysses_index;
}

std::string describe(const MeshLayout& l) {
    return str_cat(l.world, " ranks = ", l.data_parallel, " data-parallel group", l.data_parallel == 1 ? "" : "s",
                   " x (ulysses ", l.ulysses, " x spatial ", l.spatial, " + ", l.vae_ranks, " VAE ranks)");
}

Mesh Mesh::create(Communicator& world, const MeshRequest& request, const MeshShape& shape) {
    Mesh m;
    m.layout_ = resolve_mesh_layout(request, world.size(), shape);
    m.coord_ = mesh_coord(m.layout_, world.rank());
    const MeshCoord& c = m.coord_;
    const MeshLayout& l = m.layout_;
    const bool dit = c.role == MeshRole::kDit;
    // Every split is collective over the world: every rank makes each call, with color -1 to stay out.
    m.group_ = world.split(c.dp_group, c.group_rank);
    m.sequence_ = world.split(dit ? c.dp_group : -1, c.sp_rank);
    m.ulysses_ = world.split(dit ? c.dp_group * l.spatial + c.spatial_index : -1, c.ulysses_index);
    m.spatial_ = world.split(dit ? c.dp_group * l.ulysses + c.ulysses_index : -1, c.spatial_index);
    m.vae_ = world.split(dit ? -1 : c.dp_group, c.vae_index);
    return m;
}

}  // namespace lr
