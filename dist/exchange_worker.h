// The thread an exchange runs on while the caller computes (DESIGN.md section 7: "exchanges overlap compute").
//
// A sharded attention step splits its heads into groups and hands each group's exchange (pack, all-to-all,
// send_recv, unpack) to this worker as a task; the caller attends group g while the worker moves group g + 1's
// inputs in and group g - 1's outputs back. Tasks run one at a time in the order they were posted, which is the
// same on every rank, so the collectives inside them match across ranks. The caller makes no communicator call
// of its own while tasks are pending (it waits for all of them before returning), so MPI is never entered from two
// threads at once: MPI_THREAD_SERIALIZED is enough.
//
// Time: busy_seconds() is the wall time the tasks ran, exposed_seconds() the time the caller spent blocked in
// wait(); hidden = busy - exposed is exchange time that ran under the caller's compute. An inline worker (one
// group: nothing to overlap) runs each task inside post(), all of it exposed.
//
// Errors: a task that throws stops the worker; the exception is rethrown by the next wait() and the tasks after it
// never run (the run is over: run_rank_guarded aborts the job). A worker destroyed with tasks still running (an
// error on the caller's side while a peer is blocked) leaves its thread detached on shared state instead of
// joining a thread that may never return; the process is being aborted then.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

namespace lr {

class ExchangeWorker {
  public:
    // threaded = false: tasks run inside post() (one head group: nothing to overlap with).
    explicit ExchangeWorker(bool threaded);
    ~ExchangeWorker();
    ExchangeWorker(const ExchangeWorker&) = delete;
    ExchangeWorker& operator=(const ExchangeWorker&) = delete;

    bool threaded() const { return thread_.joinable(); }
    // Queues `task`; returns its ticket (1, 2, ... in post order).
    int64_t post(std::function<void()> task);
    // Blocks until the task with this ticket (and every one before it) has run; rethrows a task's exception.
    void wait(int64_t ticket);
    // wait() for everything posted so far.
    void drain();

    double busy_seconds() const;
    double exposed_seconds() const;

  private:
    struct State;
    std::shared_ptr<State> state_;
    std::thread thread_;
};

}  // namespace lr
