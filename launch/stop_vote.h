// Stopping a multi-rank run together (DESIGN.md section 9). mpirun passes a SIGINT/SIGTERM/SIGHUP on to every rank,
// but each rank sees it at its own point of the chunk: a rank that stopped alone would leave the others waiting in
// the next exchange. So after every chunk but the last, the ranks of a video (its DiT ranks, and its dedicated VAE
// ranks when they decode it) vote: each gives the signal it has seen (0 if none) and whether it is still replaying
// a resumed run's chunks; the group stops after this chunk when someone saw a signal and nobody is replaying (a
// resumed run stops no earlier than where its checkpoint already is). One all_gather of two integers on host memory,
// on the thread that owns MPI, next to a chunk's seconds of work.
#pragma once

#include "dist/communicator.h"

namespace lr {

struct StopVote {
    int signal = 0;     // the first rank's signal (in group order), 0 when none saw one
    bool stop = false;  // the group stops after this chunk
};

// Collective over `group` (every rank of it calls it after the same chunk); null or a group of one rank decides
// alone. A stop raises the agreed signal on this rank too (interrupt_signal()), so every rank exits with its code.
StopVote vote_stop(Communicator* group, bool replaying);

}  // namespace lr
