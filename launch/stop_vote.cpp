#include "launch/stop_vote.h"

#include <cstdint>
#include <vector>

#include "runtime/core/interrupt.h"

namespace lr {

StopVote vote_stop(Communicator* group, bool replaying) {
    const int64_t mine[2] = {interrupt_signal(), replaying ? 1 : 0};
    std::vector<int64_t> all(2, 0);
    if (group != nullptr && group->size() > 1) {
        all.resize(2 * static_cast<size_t>(group->size()));
        group->all_gather(mine, all.data(), sizeof mine);
    } else {
        all = {mine[0], mine[1]};
    }
    StopVote vote;
    bool anyone_replaying = false;
    for (size_t r = 0; r < all.size(); r += 2) {
        if (vote.signal == 0) vote.signal = static_cast<int>(all[r]);
        anyone_replaying = anyone_replaying || all[r + 1] != 0;
    }
    vote.stop = vote.signal != 0 && !anyone_replaying;
    if (vote.stop) raise_interrupt_flag(vote.signal);
    return vote;
}

}  // namespace lr
