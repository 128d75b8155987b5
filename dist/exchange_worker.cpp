#include "dist/exchange_worker.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>

namespace lr {

struct ExchangeWorker::State {
    std::mutex mu;
    std::condition_variable wake;  // the worker: a task or stop
    std::condition_variable done;  // the caller: a task finished (or failed)
    std::deque<std::function<void()>> queue;
    int64_t posted = 0, finished = 0;
    bool running = false, stop = false;
    std::exception_ptr error;
    int64_t busy_ns = 0, exposed_ns = 0;

    // The worker thread's loop: tasks in order until stopped or a task throws.
    void loop() {
        std::unique_lock<std::mutex> lock(mu);
        for (;;) {
            wake.wait(lock, [&] { return stop || !queue.empty(); });
            if (queue.empty() || error) return;
            std::function<void()> task = std::move(queue.front());
            queue.pop_front();
            running = true;
            lock.unlock();
            const auto t0 = std::chrono::steady_clock::now();
            std::exception_ptr e;
            try {
                task();
            } catch (...) {
                e = std::current_exception();
            }
            const auto ns =
                std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
            lock.lock();
            running = false;
            busy_ns += ns;
            if (e) {
                error = e;
                queue.clear();
            } else {
                ++finished;
            }
            done.notify_all();
            if (error) return;
        }
    }
};

ExchangeWorker::ExchangeWorker(bool threaded) : state_(std::make_shared<State>()) {
    if (threaded) thread_ = std::thread([s = state_] { s->loop(); });
}

ExchangeWorker::~ExchangeWorker() {
    if (!thread_.joinable()) return;
    bool idle = false;
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->stop = true;
        idle = !state_->running;
        state_->queue.clear();
    }
    state_->wake.notify_all();
    if (idle) {
        thread_.join();
    } else {
        thread_.detach();  // blocked in an exchange a failed peer will never finish: see the header
    }
}

int64_t ExchangeWorker::post(std::function<void()> task) {
    if (!thread_.joinable()) {
        const auto t0 = std::chrono::steady_clock::now();
        task();
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->busy_ns += ns;
        state_->exposed_ns += ns;
        state_->finished = ++state_->posted;
        return state_->posted;
    }
    int64_t ticket = 0;
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->queue.push_back(std::move(task));
        ticket = ++state_->posted;
    }
    state_->wake.notify_one();
    return ticket;
}

void ExchangeWorker::wait(int64_t ticket) {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (!thread_.joinable()) return;  // inline: done inside post(), counted there
    const auto t0 = std::chrono::steady_clock::now();
    state_->done.wait(lock, [&] { return state_->error || state_->finished >= ticket; });
    state_->exposed_ns +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    if (state_->error) std::rethrow_exception(state_->error);
}

void ExchangeWorker::drain() {
    int64_t last = 0;
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        last = state_->posted;
    }
    wait(last);
}

double ExchangeWorker::busy_seconds() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return static_cast<double>(state_->busy_ns) * 1e-9;
}

double ExchangeWorker::exposed_seconds() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return static_cast<double>(state_->exposed_ns) * 1e-9;
}

}  // namespace lr
