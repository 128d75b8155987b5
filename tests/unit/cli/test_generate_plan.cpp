#include <gtest/gtest.h>

#include "launch/config.h"
#include "launch/generate_plan.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

Config tiny() { return default_config(); }

TEST(GeneratePlan, VideoFramesPerLatentFrame) {
    EXPECT_EQ(video_frames_for_latents(1), 1);
    EXPECT_EQ(video_frames_for_latents(3), 9);
    EXPECT_EQ(video_frames_for_latents(21), 81);
    EXPECT_EQ(video_frames_between(0, 3), 9);
    EXPECT_EQ(video_frames_between(3, 6), 12);
}

TEST(GeneratePlan, SecondsRoundUpToWholeChunks) {
    const Config cfg = tiny();
    ASSERT_EQ(cfg.rollout.frames_per_chunk, 3);
    const FramePlan five = plan_frames(cfg, std::nullopt, 5.0);  // 80 frames -> 21 latent frames
    EXPECT_EQ(five.latent_frames, 21);
    EXPECT_EQ(five.chunks, 7);
    EXPECT_EQ(five.video_frames, 81);
    const FramePlan minute = plan_frames(cfg, std::nullopt, 60.0);  // 960 frames -> 241 -> 243 latent frames
    EXPECT_EQ(minute.latent_frames, 243);
    EXPECT_EQ(minute.video_frames, 969);
    EXPECT_GE(minute.seconds, 60.0);
    const FramePlan tiny_clip = plan_frames(cfg, std::nullopt, 0.01);
    EXPECT_EQ(tiny_clip.latent_frames, 3);
    const FramePlan dflt = plan_frames(cfg, std::nullopt, std::nullopt);
    EXPECT_EQ(dflt.latent_frames, kDefaultLatentFrames);
}

TEST(GeneratePlan, LatentFramesMustBeWholeChunks) {
    const Config cfg = tiny();
    EXPECT_EQ(plan_frames(cfg, 12, std::nullopt).chunks, 4);
    EXPECT_THROW(plan_frames(cfg, 13, std::nullopt), InputError);
    EXPECT_THROW(plan_frames(cfg, 0, std::nullopt), InputError);
    EXPECT_THROW(plan_frames(cfg, 3, 1.0), InputError);
    EXPECT_THROW(plan_frames(cfg, std::nullopt, -1.0), InputError);
}

TEST(GeneratePlan, AbsoluteRopeLimitsLengthWindowRelativeDoesNot) {
    Config cfg = tiny();
    cfg.rollout.rope_mode = RopeMode::kAbsolute;
    EXPECT_NO_THROW(plan_frames(cfg, 1023, std::nullopt));
    try {
        plan_frames(cfg, std::nullopt, 600.0);
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("WINDOW_RELATIVE"), std::string::npos) << e.what();
    }
    cfg.rollout.rope_mode = RopeMode::kWindowRelative;
    EXPECT_EQ(plan_frames(cfg, std::nullopt, 600.0).video_frames >= 9600, true);
}

}  // namespace
}  // namespace lr
