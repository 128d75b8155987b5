// Makes one rank fail while the others wait in a collective, so test_faults.sh can check that the whole
// job ends promptly with a non-zero code and a message naming the rank and the host.
//
//   fault_probe throw-on-rank R   rank R throws an lr::RuntimeError (run_rank_guarded -> MPI_Abort)
//   fault_probe exit-on-rank R    rank R calls std::exit(3) (the exit guard -> MPI_Abort)
//   fault_probe raw-exit-on-rank R  the same without the exit guard: Open MPI's own behaviour
//   fault_probe bad-layout        every rank validates ulysses=5 for 12 heads: exit 2, same message
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dist/fault.h"
#include "dist/mesh.h"
#include "dist/mpi_communicator.h"

namespace {

int run(const lr::MpiSession& mpi, const std::string& mode, int victim) {
    auto world = lr::MpiCommunicator::world();
    world->barrier();
    if (mode == "bad-layout") {
        lr::Mesh::create(*world, {.ulysses = 5}, {.num_heads = 12, .tokens_per_frame = 1560, .chunk_frames = 3});
        return 0;
    }
    if (world->rank() == victim) {
        if (mode == "throw-on-rank") LR_RUNTIME(false, "fault_probe: injected failure");
        std::fprintf(stderr, "fault_probe: rank %d exiting with code 3\n", victim);
        std::exit(3);
    }
    // The survivors wait in a collective the victim never joins.
    int64_t x = 1;
    world->all_reduce_sum(&x, 1);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode != "throw-on-rank" && mode != "exit-on-rank" && mode != "raw-exit-on-rank" && mode != "bad-layout") {
        std::fprintf(stderr, "usage: fault_probe throw-on-rank R | exit-on-rank R | raw-exit-on-rank R | bad-layout\n");
        return 2;
    }
    const int victim = argc > 2 ? std::atoi(argv[2]) : 0;
    lr::MpiSession mpi;
    if (mode != "raw-exit-on-rank") lr::install_exit_guard(mpi.info());
    return lr::run_rank_guarded(mpi,
                                [&] { return run(mpi, mode == "raw-exit-on-rank" ? "exit-on-rank" : mode, victim); });
}
