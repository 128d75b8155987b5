// The process mesh (DESIGN.md section 7): world = data-parallel groups x (sequence-parallel group of
// U x S DiT ranks + dedicated VAE ranks). Rank order inside a data-parallel group of G = U*S + V ranks:
//
//   group rank g < U*S: a DiT rank, ulysses index u = g % U, spatial index s = g / U
//   group rank g >= U*S: a dedicated VAE rank, vae index g - U*S
//   world rank = dp_group * G + g
//
// Ulysses is innermost because its all-to-alls run 4 times per attention layer on whole activations:
// consecutive ranks share a node (NVLink) under mpirun's default by-slot mapping.
//
// Validation uses only values every rank shares (config, world size, model shape), so every rank reaches
// the same verdict and throws the same CollectiveInputError: the job exits 2 without anyone hanging.
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.h"

namespace lr {

// What the user asked for (launch/ converts its ParallelConfig into this; dist/ does not depend on launch/).
struct MeshRequest {
    int ulysses = 1;
    int spatial = 1;
    int data_parallel = 0;       // 0 = as many groups as the world holds
    bool dedicated_vae = false;  // the VAE runs on ranks of its own (else on the DiT ranks, second stream)
    int vae_ranks = 0;           // dedicated VAE ranks per data-parallel group (only with dedicated_vae)
};

// The model and attention shapes the layout must fit.
struct MeshShape {
    int num_heads = 0;
    int tokens_per_frame = 0;  // patches per latent frame (1560 at 480p, 8160 at 1088p)
    int chunk_frames = 1;      // latent frames per chunk (rollout.frames_per_chunk)
    int q_block = 128;         // query rows per block-table row: the unit spatial ranks are dealt
    int latent_rows = 0;       // rows of a latent frame, which dedicated VAE ranks split (0: not checked)
};

struct MeshLayout {
    int world = 1;
    int data_parallel = 1;  // number of data-parallel groups
    int ulysses = 1;
    int spatial = 1;
    int vae_ranks = 0;  // dedicated VAE ranks per group

    int sequence_parallel() const { return ulysses * spatial; }
    int group_size() const { return ulysses * spatial + vae_ranks; }
    friend bool operator==(const MeshLayout&, const MeshLayout&) = default;
};

// KV blocks per frame: ceil(tokens_per_frame / block_size); the spatial degree cannot exceed it.
int query_blocks_per_chunk(const MeshShape& shape);

// Checks the request against the world size and the model; throws CollectiveInputError with a message
// naming the config field (e.g. "parallel.ulysses=5 does not divide the 12 attention heads").
MeshLayout resolve_mesh_layout(const MeshRequest& request, int world_size, const MeshShape& shape);

enum class MeshRole { kDit, kVae };

struct MeshCoord {
    int dp_group = 0;
    int group_rank = 0;  // rank inside the data-parallel group
    MeshRole role = MeshRole::kDit;
    int sp_rank = -1;        // rank inside the sequence-parallel group (DiT ranks), else -1
    int ulysses_index = -1;  // DiT ranks, else -1
    int spatial_index = -1;  // DiT ranks, else -1
    int vae_index = -1;      // dedicated VAE ranks, else -1
    friend bool operator==(const MeshCoord&, const MeshCoord&) = default;
};

MeshCoord mesh_coord(const MeshLayout& layout, int world_rank);
// Inverse of mesh_coord for DiT ranks.
int mesh_dit_world_rank(const MeshLayout& layout, int dp_group, int ulysses_index, int spatial_index);
std::string describe(const MeshLayout& layout);

// A rank's place in the mesh and its sub-communicators. Built collectively from the world communicator
// (every rank calls Mesh::create with the same request).
class Mesh {
  public:
    static Mesh create(Communicator& world, const MeshRequest& request, const MeshShape& shape);

    const MeshLayout& layout() const { return layout_; }
    const MeshCoord& coord() const { return coord_; }
    bool is_dit() const { return coord_.role == MeshRole::kDit; }

    // Every rank of this rank's data-parallel group (DiT and VAE ranks): the DiT -> VAE latents transport.
    Communicator& group() const { return *group_; }
    // The U*S DiT ranks generating one video together; null on a VAE rank.
    Communicator* sequence() const { return sequence_.get(); }
    // Same dp group and spatial index: the U ranks exchanging heads (all-to-all); null on a VAE rank.
    Communicator* ulysses() const { return ulysses_.get(); }
    // Same dp group and ulysses index: the S ranks exchanging KV blocks; null on a VAE rank.
    Communicator* spatial() const { return spatial_.get(); }
    // The dedicated VAE ranks of the group; null on a DiT rank or without dedicated VAE ranks.
    Communicator* vae() const { return vae_.get(); }

  private:
    MeshLayout layout_;
    MeshCoord coord_;
    std::unique_ptr<Communicator> group_, sequence_, ulysses_, spatial_, vae_;
};

}  // namespace lr
