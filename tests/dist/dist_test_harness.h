// A tiny harness for tests run under mpirun (nccl-tests style): every rank counts its own errors, the
// counts are summed over the world, and every rank returns the same verdict.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "dist/communicator.h"

namespace lr::disttest {

class Errors {
  public:
    explicit Errors(int rank) : rank_(rank) {}
    // Counts a failure and says where, with this rank.
    void expect(bool ok, const std::string& what) {
        if (ok) return;
        ++count_;
        if (count_ <= 20) std::fprintf(stderr, "FAIL rank %d: %s\n", rank_, what.c_str());
    }
    int64_t count() const { return count_; }

  private:
    int rank_;
    int64_t count_ = 0;
};

// The world's total error count, the same on every rank.
inline int64_t agree(Communicator& world, const Errors& errors) {
    int64_t total = errors.count();
    world.all_reduce_sum(&total, 1);
    return total;
}

}  // namespace lr::disttest
