// parallel.transport at start-up (plan_transport): AUTO takes NCCL only where it can run and there is something
// to exchange; NCCL asked for where it cannot run is an input error that says why.
#include <gtest/gtest.h>

#include <string>

#include "launch/generate_plan.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

// Two DiT ranks per video on a build with NCCL, each on a GPU of its own: NCCL can run.
TransportFacts can_run(Transport requested) {
    TransportFacts f;
    f.requested = requested;
    f.nccl_built = true;
    f.sequence_parallel = 2;
    return f;
}

std::string error_of(const TransportFacts& f) {
    try {
        plan_transport(f);
    } catch (const InputError& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(TransportPlan, AutoTakesNcclWhereItCanRun) {
    const TransportPlan p = plan_transport(can_run(Transport::kAuto));
    EXPECT_EQ(p.transport, Transport::kNccl);
    EXPECT_EQ(p.why, "one GPU per rank");
}

TEST(TransportPlan, AutoFallsBackToMpiAndSaysWhy) {
    TransportFacts f = can_run(Transport::kAuto);
    f.sequence_parallel = 1;
    EXPECT_EQ(plan_transport(f).transport, Transport::kMpi);
    EXPECT_EQ(plan_transport(f).why, "one DiT rank per video: nothing to exchange");

    f = can_run(Transport::kAuto);
    f.nccl_built = false;
    EXPECT_EQ(plan_transport(f).transport, Transport::kMpi);
    EXPECT_EQ(plan_transport(f).why, "this build has no NCCL");

    f = can_run(Transport::kAuto);
    f.cpu_rank = 1;
    EXPECT_EQ(plan_transport(f).transport, Transport::kMpi);
    EXPECT_EQ(plan_transport(f).why, "the DiT runs on the CPU");

    f = can_run(Transport::kAuto);
    f.shared = SharedGpus{"h", 2, 1};
    EXPECT_EQ(plan_transport(f).transport, Transport::kMpi);
    EXPECT_EQ(plan_transport(f).why, "2 ranks on host h share 1 GPU");
}

TEST(TransportPlan, MpiIsTakenAsAsked) {
    EXPECT_EQ(plan_transport(can_run(Transport::kMpi)).transport, Transport::kMpi);
    TransportFacts f = can_run(Transport::kMpi);
    f.nccl_built = false;
    f.shared = SharedGpus{"h", 4, 1};
    EXPECT_EQ(plan_transport(f).transport, Transport::kMpi);
    EXPECT_EQ(plan_transport(f).why, "parallel.transport=MPI");
}

TEST(TransportPlan, NcclWhereItCanRun) {
    EXPECT_EQ(plan_transport(can_run(Transport::kNccl)).transport, Transport::kNccl);
    // One DiT rank per video: nothing to exchange, but nothing in the way either.
    TransportFacts f = can_run(Transport::kNccl);
    f.sequence_parallel = 1;
    EXPECT_EQ(plan_transport(f).transport, Transport::kNccl);
}

TEST(TransportPlan, NcclWhereItCannotRunSaysWhy) {
    TransportFacts f = can_run(Transport::kNccl);
    f.shared = SharedGpus{"node7", 2, 1};
    EXPECT_EQ(error_of(f),
              "parallel.transport=NCCL: 2 ranks on host node7 share 1 GPU; NCCL needs one GPU per rank (use "
              "parallel.transport=MPI or more GPUs)");
    f.shared = SharedGpus{"node7", 3, 2};
    EXPECT_NE(error_of(f).find("3 ranks on host node7 share 2 GPUs"), std::string::npos);

    f = can_run(Transport::kNccl);
    f.cpu_rank = 0;
    EXPECT_EQ(error_of(f).rfind("parallel.transport=NCCL: rank 0 runs the DiT on the CPU", 0), 0u) << error_of(f);

    // The DiT on the CPU comes before shared GPUs, and the remedy is that of the obstacle named.
    f.shared = SharedGpus{"node7", 2, 1};
    EXPECT_EQ(error_of(f).rfind("parallel.transport=NCCL: rank 0 runs the DiT on the CPU", 0), 0u) << error_of(f);
    EXPECT_NE(error_of(f).find("; use parallel.transport=MPI or AUTO"), std::string::npos) << error_of(f);
    EXPECT_EQ(error_of(f).find("more GPUs"), std::string::npos) << error_of(f);

    // Without NCCL in the build nothing else matters (and nothing else was asked of the other ranks).
    f = can_run(Transport::kNccl);
    f.nccl_built = false;
    f.cpu_rank = 0;
    f.shared = SharedGpus{"node7", 2, 1};
    EXPECT_EQ(error_of(f),
              "parallel.transport=NCCL: this build has no NCCL (configure with -DLONGROLL_CUDA=ON where NCCL is "
              "installed); use parallel.transport=MPI or AUTO");
}

}  // namespace
}  // namespace lr
