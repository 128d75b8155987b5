// VaePipeline: the VAE on a thread of its own behind a bounded queue of latent chunks. Its frames are the inline
// decode's, byte for byte; the queue bounds how far the producer runs ahead; an error on the decode thread comes
// back to the producer.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/vae/vae_pipeline.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

constexpr int64_t kH = 3, kW = 4;

std::vector<float> latents(const WanVaeDecoder& vae, int64_t frames) {
    return test::gaussian(frames * vae.config().z_dim * kH * kW, 41);
}

TEST(VaePipeline, FramesEqualTheInlineDecode) {
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    const std::vector<int64_t> chunks = {1, 3, 3};
    const std::vector<float> z = latents(vae, 7);
    const int64_t per_latent = vae.config().z_dim * kH * kW;

    std::vector<uint8_t> inline_bytes;
    {
        VaeStream stream(vae);
        int64_t done = 0;
        for (const int64_t n : chunks) {
            stream.decode(z.data() + done * per_latent, n, kH, kW, [&](const VaeFrame& f) {
                inline_bytes.insert(inline_bytes.end(), f.rgb24, f.rgb24 + 3 * f.height * f.width);
            });
            done += n;
        }
    }

    VaeStream stream(vae);
    std::vector<uint8_t> piped;
    std::vector<VaeChunkDone> reports;
    const std::thread::id producer = std::this_thread::get_id();
    std::atomic<bool> emitted_on_producer{false};
    VaePipeline pipe(
        stream, kH, kW,
        [&](const VaeFrame& f) {
            if (std::this_thread::get_id() == producer) emitted_on_producer = true;
            piped.insert(piped.end(), f.rgb24, f.rgb24 + 3 * f.height * f.width);
        },
        [&](const VaeChunkDone& d) { reports.push_back(d); }, /*capacity=*/1);
    // The producer's buffer is reused (and overwritten) after each push, as the rollout's is.
    std::vector<float> buffer;
    int64_t done = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
        buffer.assign(z.begin() + done * per_latent, z.begin() + (done + chunks[i]) * per_latent);
        pipe.push(static_cast<int64_t>(i), buffer.data(), chunks[i]);
        std::fill(buffer.begin(), buffer.end(), 1e6f);
        done += chunks[i];
    }
    pipe.finish();
    EXPECT_FALSE(emitted_on_producer) << "the frames must come from the decode thread";
    ASSERT_EQ(piped.size(), inline_bytes.size());
    EXPECT_EQ(piped, inline_bytes);
    ASSERT_EQ(reports.size(), chunks.size());
    const int64_t frames[] = {1, 12, 12};
    for (size_t i = 0; i < reports.size(); ++i) {
        EXPECT_EQ(reports[i].index, static_cast<int64_t>(i));
        EXPECT_EQ(reports[i].latent_frames, chunks[i]);
        EXPECT_EQ(reports[i].frames, frames[i]);
        EXPECT_GT(reports[i].seconds, 0.0);
    }
    EXPECT_EQ(stream.frames_emitted(), 25);
}

TEST(VaePipeline, PushBlocksWhileTheQueueIsFull) {
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    const std::vector<float> z = latents(vae, 1);
    VaeStream stream(vae);
    std::mutex m;
    std::condition_variable cv;
    bool decoding = false, release = false;
    VaePipeline pipe(
        stream, kH, kW,
        [&](const VaeFrame&) {
            std::unique_lock<std::mutex> lock(m);
            decoding = true;
            cv.notify_all();
            cv.wait(lock, [&] { return release; });
        },
        nullptr, /*capacity=*/1);
    pipe.push(0, z.data(), 1);
    {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return decoding; });  // chunk 0 is on the decode thread, held in emit
    }
    pipe.push(1, z.data(), 1);  // waits in the queue: returns at once
    std::atomic<bool> third_returned{false};
    std::thread producer([&] {
        pipe.push(2, z.data(), 1);  // the queue is full: blocks until chunk 1 leaves it
        third_returned = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(third_returned) << "push did not wait for room in a queue of 1";
    {
        const std::lock_guard<std::mutex> lock(m);
        release = true;
    }
    cv.notify_all();
    producer.join();
    EXPECT_TRUE(third_returned);
    pipe.finish();
    EXPECT_EQ(stream.latent_frames_decoded(), 3);
}

TEST(VaePipeline, AnErrorOnTheDecodeThreadReachesTheProducer) {
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    const std::vector<float> z = latents(vae, 3);
    {  // rethrown by a later push or by finish
        VaeStream stream(vae);
        int64_t frames = 0;
        VaePipeline pipe(stream, kH, kW, [&](const VaeFrame&) {
            if (++frames == 3) throw std::runtime_error("disk full");
        });
        bool thrown = false;
        try {
            for (int i = 0; i < 20; ++i) pipe.push(i, z.data(), 3);
            pipe.finish();
        } catch (const std::runtime_error& e) {
            thrown = std::string(e.what()) == "disk full";
        }
        EXPECT_TRUE(thrown);
        EXPECT_LT(frames, 20 * 12) << "the decode thread stopped at the error";
    }
    {  // the exception keeps its type (an InputError still exits 2)
        VaeStream stream(vae);
        VaePipeline pipe(stream, kH, kW, [](const VaeFrame&) { throw InputError("bad output"); });
        pipe.push(0, z.data(), 1);
        EXPECT_THROW(pipe.finish(), InputError);
    }
    {  // destroyed without finish (an error elsewhere in the producer): the thread stops and is joined
        VaeStream stream(vae);
        {
            VaePipeline pipe(stream, kH, kW, [](const VaeFrame&) {});
            for (int i = 0; i < 3; ++i) pipe.push(i, z.data(), 1);
        }
        EXPECT_LE(stream.latent_frames_decoded(), 3);
    }
}

}  // namespace
}  // namespace lr
