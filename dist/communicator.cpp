#include "dist/communicator.h"

namespace lr {

const char* comm_op_name(CommOp op) {
    switch (op) {
        case CommOp::kAllToAll:
            return "all_to_all";
        case CommOp::kAllGather:
            return "all_gather";
        case CommOp::kAllReduce:
            return "all_reduce";
        case CommOp::kBroadcast:
            return "broadcast";
        case CommOp::kSendRecv:
            return "send_recv";
        case CommOp::kCount:
            break;
    }
    return "unknown";
}

uint64_t Communicator::bytes_sent_total() const {
    uint64_t total = 0;
    for (const auto& b : bytes_) total += b.load(std::memory_order_relaxed);
    return total;
}

void Communicator::reset_byte_counters() {
    for (auto& b : bytes_) b.store(0, std::memory_order_relaxed);
}

void Communicator::count_send_recv(std::span<const SendSpec> sends) {
    uint64_t total = 0;
    for (const SendSpec& s : sends) {
        if (s.peer != rank()) total += s.bytes;
    }
    count_bytes(CommOp::kSendRecv, total);
}

}  // namespace lr
