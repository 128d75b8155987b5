#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "runtime/core/check.h"
#include "runtime/core/progress.h"

namespace lr {
namespace {

TEST(Check, ErrorKindsAndExitCodes) {
    try {
        LR_CHECK(1 + 1 == 3, "tensor '", "x", "': expected ", 3, ", found ", 2);
        FAIL();
    } catch (const InputError& e) {
        EXPECT_STREQ(e.what(), "tensor 'x': expected 3, found 2");
        EXPECT_EQ(e.exit_code(), 2);
    }
    try {
        LR_RUNTIME(false, "disk full");
        FAIL();
    } catch (const RuntimeError& e) {
        EXPECT_EQ(e.exit_code(), 1);
    }
    try {
        LR_ASSERT(2 < 1, "n=", 5);
        FAIL();
    } catch (const InternalError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("2 < 1"), std::string::npos) << m;
        EXPECT_NE(m.find("n=5"), std::string::npos) << m;
        EXPECT_NE(m.find("test_check_progress.cpp"), std::string::npos) << m;
        EXPECT_EQ(e.exit_code(), 1);
    }
    EXPECT_NO_THROW(LR_CHECK(true, "never"));
}

TEST(Progress, LineAndDurations) {
    EXPECT_EQ(format_duration(0), "0:00");
    EXPECT_EQ(format_duration(75), "1:15");
    EXPECT_EQ(format_duration(3723), "1:02:03");
    EXPECT_EQ(format_duration(-1), "--:--");
    ProgressSnapshot s;
    s.chunks_done = 2;
    s.chunks_total = 4;
    s.frames_done = 32;
    s.frames_total = 64;
    s.elapsed_s = 2.0;
    s.fps = 16;
    // 16 frames/s, 2 s to go, exactly real time.
    EXPECT_EQ(format_progress_line(s), "chunk 2/4  frames 32/64  16.0 fps  ETA 0:02  1.00x real time");
}

TEST(Progress, PlainLinesWhenNotATerminal) {
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    ProgressReporter p(3, 33, 16, /*enabled=*/true, f, /*terminal=*/0);
    p.update(1, 9);
    p.update(2, 21);
    p.update(3, 33);
    p.finish();
    std::rewind(f);
    char buf[4096] = {};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    const std::string out(buf, n);
    EXPECT_NE(out.find("chunk 1/3  frames 9/33"), std::string::npos) << out;
    EXPECT_NE(out.find("chunk 3/3  frames 33/33"), std::string::npos) << out;
    EXPECT_EQ(out.find('\r'), std::string::npos) << "no carriage returns in logs";
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3);
}

TEST(Progress, DisabledPrintsNothing) {
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    ProgressReporter p(1, 1, 16, /*enabled=*/false, f, 0);
    p.update(1, 1);
    p.finish();
    EXPECT_EQ(std::ftell(f), 0);
    std::fclose(f);
}

}  // namespace
}  // namespace lr
