#include "launch/exchange_meter.h"

namespace lr {

void ExchangeMeter::watch(const Communicator* comm, CommOp op, ExchangeOp as) {
    if (comm) watches_.push_back(Watch{comm, op, as, comm->bytes_sent(op)});
}

void ExchangeMeter::report(Metrics& metrics) {
    for (Watch& w : watches_) {
        const uint64_t now = w.comm->bytes_sent(w.op);
        if (now > w.reported) metrics.bytes_exchanged(w.as, static_cast<int64_t>(now - w.reported));
        w.reported = now;
    }
}

}  // namespace lr
