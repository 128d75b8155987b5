// Mesh::create under mpirun: every layout the world size allows, checked for consistent sub-communicators
// (sizes, ranks, and members agreeing on their coordinates through all-gathers).
#include <cinttypes>
#include <cstdio>
#include <vector>

#include "dist/fault.h"
#include "dist/mesh.h"
#include "dist/mpi_communicator.h"
#include "dist_test_harness.h"

namespace lr {
namespace {

using disttest::Errors;

// Members of `c` (world ranks, in sub-rank order), gathered.
std::vector<int> members(Communicator& c, int world_rank) {
    std::vector<int> out(c.size());
    c.all_gather(&world_rank, out.data(), sizeof(int));
    return out;
}

void check_mesh(Communicator& world, const MeshRequest& req, Errors& e) {
    const MeshShape shape{.num_heads = 12, .tokens_per_frame = 1560, .chunk_frames = 3};
    const Mesh m = Mesh::create(world, req, shape);
    const MeshLayout& l = m.layout();
    const MeshCoord& c = m.coord();
    const std::string where = describe(l) + ": ";
    const int me = world.rank();
    e.expect(c == mesh_coord(l, me), where + "coord");

    const auto group = members(m.group(), me);
    e.expect(static_cast<int>(group.size()) == l.group_size(), where + "group size");
    for (int i = 0; i < static_cast<int>(group.size()); ++i)
        e.expect(group[i] == c.dp_group * l.group_size() + i, where + "group members in rank order");

    if (m.is_dit()) {
        e.expect(m.sequence() && m.ulysses() && m.spatial() && !m.vae(), where + "DiT rank communicators");
        if (!m.sequence() || !m.ulysses() || !m.spatial()) return;
        e.expect(m.sequence()->size() == l.sequence_parallel() && m.sequence()->rank() == c.sp_rank,
                 where + "sequence group");
        const auto u = members(*m.ulysses(), me);
        e.expect(static_cast<int>(u.size()) == l.ulysses && m.ulysses()->rank() == c.ulysses_index,
                 where + "ulysses group");
        for (int i = 0; i < static_cast<int>(u.size()); ++i)
            e.expect(u[i] == mesh_dit_world_rank(l, c.dp_group, i, c.spatial_index), where + "ulysses members");
        const auto s = members(*m.spatial(), me);
        e.expect(static_cast<int>(s.size()) == l.spatial && m.spatial()->rank() == c.spatial_index,
                 where + "spatial group");
        for (int i = 0; i < static_cast<int>(s.size()); ++i)
            e.expect(s[i] == mesh_dit_world_rank(l, c.dp_group, c.ulysses_index, i), where + "spatial members");
    } else {
        e.expect(!m.sequence() && !m.ulysses() && !m.spatial() && m.vae(), where + "VAE rank communicators");
        if (m.vae()) e.expect(m.vae()->size() == l.vae_ranks && m.vae()->rank() == c.vae_index, where + "vae group");
    }
}

int run() {
    auto world = MpiCommunicator::world();
    Errors e(world->rank());
    const int n = world->size();
    int layouts = 0;
    for (int u : {1, 2, 3, 4}) {
        for (int s : {1, 2, 3, 4}) {
            for (int v : {0, 1}) {
                const MeshRequest req{.ulysses = u, .spatial = s, .dedicated_vae = v > 0, .vae_ranks = v};
                if (n % (u * s + v) != 0) continue;
                check_mesh(*world, req, e);
                ++layouts;
            }
        }
    }
    // A refused layout is refused identically on every rank, before any communication.
    std::string msg;
    try {
        Mesh::create(*world, {.ulysses = 5}, {12, 1560, 128});
    } catch (const CollectiveInputError& err) {
        msg = err.what();
    }
    e.expect(msg.find("parallel.ulysses=5 does not divide the 12 attention heads") != std::string::npos,
             "bad layout message: '" + msg + "'");
    std::vector<char> all(n * 256, 0), mine(256, 0);
    msg.copy(mine.data(), 255);
    world->all_gather(mine.data(), all.data(), 256);
    for (int p = 0; p < n; ++p)
        e.expect(std::string(all.data() + p * 256) == msg, "rank " + std::to_string(p) + " has another message");

    const int64_t total = disttest::agree(*world, e);
    if (world->rank() == 0)
        std::printf("dist_mesh_test: %d ranks, %d layouts, %" PRId64 " errors: %s\n", n, layouts, total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [] { return lr::run(); });
}
