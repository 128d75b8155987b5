// make_async_writer: same bytes as the writer it wraps, bounded queue, errors from the worker rethrown.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/video/video_writer.h"
#include "tests/unit/video/video_test_util.h"

namespace lr {
namespace {

using namespace video_test;

VideoSpec spec_of(int width, int height, int crop_height = 0) {
    VideoSpec spec;
    spec.width = width;
    spec.height = height;
    spec.crop_height = crop_height;
    return spec;
}

// A writer that keeps a copy of every frame, can fail on a given frame and can hold the worker at a gate.
class FakeWriter final : public VideoWriter {
  public:
    struct Shared {
        std::mutex mu;
        std::condition_variable cv;
        bool gate_open = true;
        std::vector<std::vector<uint8_t>> frames;
        bool finished = false;
    };

    FakeWriter(const VideoSpec& spec, Shared* shared, int fail_at = -1)
        : spec_(spec), shared_(shared), fail_at_(fail_at) {}

    void write_frame(const uint8_t* rgb, int64_t stride_bytes) override {
        std::unique_lock<std::mutex> lock(shared_->mu);
        shared_->cv.wait(lock, [this] { return shared_->gate_open; });
        LR_RUNTIME(frames_ != fail_at_, "disk full (fake) at frame ", frames_);
        std::vector<uint8_t> frame;
        for (int r = 0; r < spec_.height; ++r)
            frame.insert(frame.end(), rgb + r * stride_bytes, rgb + r * stride_bytes + int64_t{spec_.width} * 3);
        shared_->frames.push_back(std::move(frame));
        ++frames_;
    }
    void finish() override {
        std::lock_guard<std::mutex> lock(shared_->mu);
        shared_->finished = true;
    }
    int64_t frames_written() const override { return frames_; }
    const std::string& path() const override { return path_; }
    const VideoSpec& spec() const override { return spec_; }

  private:
    VideoSpec spec_;
    Shared* shared_;
    int fail_at_;
    int64_t frames_ = 0;
    std::string path_ = "fake.y4m";
};

// Writes `frames` pattern frames through `writer` from one reused buffer that is scribbled over right
// after each call, so a writer that kept a pointer instead of a copy would produce garbage.
void write_pattern_reusing_buffer(VideoWriter& writer, int frames) {
    const VideoSpec& spec = writer.spec();
    std::vector<uint8_t> rgb(static_cast<size_t>(spec.width) * spec.height * 3);
    for (int i = 0; i < frames; ++i) {
        fill_test_pattern(i, spec.width, spec.height, rgb.data(), int64_t{spec.width} * 3);
        writer.write_frame(rgb.data(), int64_t{spec.width} * 3);
        std::fill(rgb.begin(), rgb.end(), uint8_t{0x77});
    }
    writer.finish();
}

TEST(AsyncWriter, Y4mOutputIsIdenticalToTheSyncWriter) {
    ScratchDir dir;
    const VideoSpec spec = spec_of(64, 80, 72);
    {
        auto sync = open_video_writer(dir.file("sync.y4m"), spec);
        write_pattern(*sync, 20);
    }
    {
        auto async = make_async_writer(open_video_writer(dir.file("async.y4m"), spec), 3);
        EXPECT_EQ(async->path(), dir.file("async.y4m"));
        EXPECT_EQ(async->spec().crop_height, 72);
        write_pattern_reusing_buffer(*async, 20);
        EXPECT_EQ(async->frames_written(), 20);
        async->finish();  // idempotent
    }
    EXPECT_EQ(dir.entries(), (std::vector<std::string>{"async.y4m", "sync.y4m"}));
    EXPECT_EQ(read_y4m(dir.file("async.y4m")).frames.size(), 20u);
    EXPECT_EQ(read_file(dir.file("async.y4m")), read_file(dir.file("sync.y4m")));
}

TEST(AsyncWriter, Mp4OutputIsIdenticalToTheSyncWriter) {
    if (!mp4_supported()) GTEST_SKIP() << "built without MP4 support";
    ScratchDir dir;
    VideoSpec spec = spec_of(128, 64);
    spec.preset = "veryfast";
    {
        auto sync = open_video_writer(dir.file("sync.mp4"), spec);
        write_pattern(*sync, 20);
    }
    {
        auto async = make_async_writer(open_video_writer(dir.file("async.mp4"), spec), 2);
        write_pattern_reusing_buffer(*async, 20);
    }
    EXPECT_EQ(read_file(dir.file("async.mp4")), read_file(dir.file("sync.mp4")));
}

TEST(AsyncWriter, FramesArriveInOrderFromStridedInput) {
    FakeWriter::Shared shared;
    const VideoSpec spec = spec_of(24, 10);
    auto async = make_async_writer(std::make_unique<FakeWriter>(spec, &shared), 2);
    const int64_t stride = 24 * 3 + 9;
    std::vector<uint8_t> padded(static_cast<size_t>(stride) * 10);
    for (int i = 0; i < 12; ++i) {
        fill_test_pattern(i, 24, 10, padded.data(), stride);
        async->write_frame(padded.data(), stride);
    }
    async->finish();
    EXPECT_TRUE(shared.finished);
    ASSERT_EQ(shared.frames.size(), 12u);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(shared.frames[i], pattern_frame(i, 24, 10)) << "frame " << i;
}

TEST(AsyncWriter, QueueIsBounded) {
    FakeWriter::Shared shared;
    shared.gate_open = false;  // the worker blocks inside its first write_frame
    const VideoSpec spec = spec_of(16, 8);
    auto async = make_async_writer(std::make_unique<FakeWriter>(spec, &shared), 3);
    std::atomic<int> accepted{0};
    std::thread producer([&] {
        const std::vector<uint8_t> rgb = pattern_frame(0, 16, 8);
        for (int i = 0; i < 10; ++i) {
            write_rgb(*async, rgb);
            ++accepted;
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // The 3 buffers are the frame the blocked worker holds and 2 queued: the producer waits for a free one.
    EXPECT_LE(accepted.load(), 3);
    {
        std::lock_guard<std::mutex> lock(shared.mu);
        shared.gate_open = true;
    }
    shared.cv.notify_all();
    producer.join();
    async->finish();
    EXPECT_EQ(accepted.load(), 10);
    EXPECT_EQ(shared.frames.size(), 10u);
}

TEST(AsyncWriter, WorkerErrorIsRethrownFromWriteFrameAndFinish) {
    FakeWriter::Shared shared;
    const VideoSpec spec = spec_of(16, 8);
    auto async = make_async_writer(std::make_unique<FakeWriter>(spec, &shared, /*fail_at=*/3), 2);
    const std::vector<uint8_t> rgb = pattern_frame(0, 16, 8);
    int written = 0;
    bool threw = false;
    for (; written < 100; ++written) {
        try {
            write_rgb(*async, rgb);
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("disk full (fake) at frame 3"), std::string::npos) << e.what();
            threw = true;
            break;
        }
    }
    EXPECT_TRUE(threw) << "the failure on frame 3 never reached write_frame";
    // At most: 3 frames done, the failing one and 1 queued behind it (2 buffers).
    EXPECT_LE(written, 5);
    EXPECT_THROW(async->finish(), RuntimeError);
    EXPECT_FALSE(shared.finished) << "finish() must not finish the inner writer after an error";
}

TEST(AsyncWriter, ErrorOnTheLastFramesIsRethrownFromFinish) {
    FakeWriter::Shared shared;
    const VideoSpec spec = spec_of(16, 8);
    auto async = make_async_writer(std::make_unique<FakeWriter>(spec, &shared, /*fail_at=*/2), 4);
    const std::vector<uint8_t> rgb = pattern_frame(0, 16, 8);
    for (int i = 0; i < 3; ++i) write_rgb(*async, rgb);  // all fit in the queue
    try {
        async->finish();
        ADD_FAILURE() << "finish() did not report the worker's error";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("disk full (fake) at frame 2"), std::string::npos) << e.what();
    }
}

TEST(AsyncWriter, AbandonedWriterLeavesNothing) {
    ScratchDir dir;
    {
        auto async = make_async_writer(open_video_writer(dir.file("v.y4m"), spec_of(64, 32)), 2);
        const std::vector<uint8_t> rgb = pattern_frame(0, 64, 32);
        for (int i = 0; i < 6; ++i) write_rgb(*async, rgb);
    }
    EXPECT_TRUE(dir.entries().empty());
}

TEST(AsyncWriter, AbandonedWhileTheWorkerIsBlockedDoesNotHang) {
    FakeWriter::Shared shared;
    shared.gate_open = false;
    auto async = make_async_writer(std::make_unique<FakeWriter>(spec_of(16, 8), &shared), 2);
    const std::vector<uint8_t> rgb = pattern_frame(0, 16, 8);
    for (int i = 0; i < 2; ++i) write_rgb(*async, rgb);  // one in the worker, one queued
    std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::lock_guard<std::mutex> lock(shared.mu);
        shared.gate_open = true;
        shared.cv.notify_all();
    });
    async.reset();  // waits for the frame in flight only, drops the queued ones
    opener.join();
    EXPECT_LE(shared.frames.size(), 1u);
    EXPECT_FALSE(shared.finished);
}

TEST(AsyncWriter, QueueCapacityMustBePositive) {
    ScratchDir dir;
    EXPECT_THROW(make_async_writer(open_video_writer(dir.file("v.y4m"), spec_of(16, 8)), 0), InputError);
    EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace lr
