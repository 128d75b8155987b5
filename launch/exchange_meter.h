// Bytes exchanged between ranks, from the communicators' own counters to longroll_exchanged_bytes_total{op}.
//
// Each communicator counts what this rank puts on the wire per kind of operation (dist/communicator.h); a meter
// knows which counter of which communicator means what (the spatial group's send_recv is the KV-block exchange,
// the Ulysses group's all_to_all the head exchange, ...) and adds what each counter gained since the last
// report() to the metric. Call report() from one thread.
#pragma once

#include <cstdint>
#include <vector>

#include "dist/communicator.h"
#include "monitoring/metrics.h"

namespace lr {

class ExchangeMeter {
  public:
    // Counts `comm`'s `op` bytes (from now on) as `as`; a null comm is ignored (a layout without that group).
    void watch(const Communicator* comm, CommOp op, ExchangeOp as);
    // Adds every watched counter's growth since the last report to `metrics`.
    void report(Metrics& metrics);

  private:
    struct Watch {
        const Communicator* comm = nullptr;
        CommOp op = CommOp::kAllToAll;
        ExchangeOp as = ExchangeOp::kAllToAll;
        uint64_t reported = 0;
    };
    std::vector<Watch> watches_;
};

}  // namespace lr
