// ExchangeWorker (dist/exchange_worker.h): tasks run in post order on one thread other than the caller's, wait()
// blocks until its ticket's task ran, a task's error reaches the caller and stops the tasks after it, and the time
// split (busy vs exposed) is what the caller saw.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dist/exchange_worker.h"

namespace lr {
namespace {

using namespace std::chrono_literals;

TEST(ExchangeWorker, RunsTasksInPostOrderOnAnotherThread) {
    ExchangeWorker w(true);
    ASSERT_TRUE(w.threaded());
    std::vector<int> order;  // touched by the worker only until drain()
    std::vector<std::thread::id> ids;
    for (int i = 0; i < 50; ++i)
        w.post([&, i] {
            order.push_back(i);
            ids.push_back(std::this_thread::get_id());
        });
    w.drain();
    ASSERT_EQ(order.size(), 50u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
    for (const auto& id : ids) EXPECT_NE(id, std::this_thread::get_id());
}

TEST(ExchangeWorker, WaitBlocksUntilItsTicketRan) {
    ExchangeWorker w(true);
    std::atomic<bool> first{false}, second{false};
    const int64_t a = w.post([&] {
        std::this_thread::sleep_for(30ms);
        first = true;
    });
    const int64_t b = w.post([&] {
        std::this_thread::sleep_for(30ms);
        second = true;
    });
    EXPECT_EQ(b, a + 1);
    w.wait(a);
    EXPECT_TRUE(first.load());
    w.wait(b);
    EXPECT_TRUE(second.load());
}

TEST(ExchangeWorker, OverlappedTimeIsHiddenAndWaitedTimeExposed) {
    ExchangeWorker w(true);
    const int64_t t = w.post([] { std::this_thread::sleep_for(100ms); });
    std::this_thread::sleep_for(150ms);  // the caller's "compute": the task ends under it
    w.wait(t);
    EXPECT_GE(w.busy_seconds(), 0.095);
    EXPECT_LT(w.exposed_seconds(), 0.05) << "the task finished while the caller computed";
    const int64_t u = w.post([] { std::this_thread::sleep_for(100ms); });
    w.wait(u);  // nothing to overlap: all of it waited for
    EXPECT_GE(w.exposed_seconds(), 0.09);
    EXPECT_LE(w.exposed_seconds(), w.busy_seconds() + 0.05);
}

TEST(ExchangeWorker, InlineRunsInPostAndCountsEverySecondExposed) {
    ExchangeWorker w(false);
    EXPECT_FALSE(w.threaded());
    bool ran = false;
    const int64_t t = w.post([&] {
        std::this_thread::sleep_for(20ms);
        ran = true;
    });
    EXPECT_TRUE(ran) << "inline: done when post() returns";
    w.wait(t);
    EXPECT_GE(w.busy_seconds(), 0.019);
    EXPECT_EQ(w.exposed_seconds(), w.busy_seconds());
}

TEST(ExchangeWorker, ATaskErrorReachesTheCallerAndStopsTheRest) {
    ExchangeWorker w(true);
    std::atomic<int> after{0};
    w.post([] { throw std::runtime_error("peer 3 is gone"); });
    const int64_t last = w.post([&] { ++after; });
    try {
        w.wait(last);
        FAIL() << "wait() returned after a task threw";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "peer 3 is gone");
    }
    EXPECT_EQ(after.load(), 0) << "a task after the failed one ran";
    EXPECT_THROW(w.drain(), std::runtime_error);
}

TEST(ExchangeWorker, DestroyedWithTasksPendingDoesNotRunThem) {
    std::atomic<int> ran{0};
    {
        ExchangeWorker w(true);
        w.post([&] {
            std::this_thread::sleep_for(50ms);
            ++ran;
        });
        for (int i = 0; i < 10; ++i) w.post([&] { ++ran; });
    }  // the running task may finish; the queued ones are dropped
    std::this_thread::sleep_for(100ms);
    EXPECT_LE(ran.load(), 1);
}

}  // namespace
}  // namespace lr
