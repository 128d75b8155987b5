// open_video_writer and video_format_for_path: everything rejected before a file is created.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <string>

#include "runtime/core/check.h"
#include "runtime/video/partial_file.h"
#include "runtime/video/video_writer.h"
#include "tests/unit/video/video_test_util.h"

namespace lr {
namespace {

using video_test::ScratchDir;
namespace fs = std::filesystem;

// Runs `fn`, expects an InputError whose message contains every one of `parts`.
void expect_input_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
    try {
        fn();
        ADD_FAILURE() << "expected an InputError";
    } catch (const InputError& e) {
        const std::string msg = e.what();
        for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << msg;
    }
}

VideoSpec small_spec() {
    VideoSpec spec;
    spec.width = 64;
    spec.height = 32;
    return spec;
}

TEST(VideoFormat, FromExtension) {
    EXPECT_EQ(video_format_for_path("out.mp4"), VideoFormat::kMp4);
    EXPECT_EQ(video_format_for_path("/a/b.c/out.MP4"), VideoFormat::kMp4);
    EXPECT_EQ(video_format_for_path("clip.y4m"), VideoFormat::kY4m);
    EXPECT_EQ(video_format_for_path("dir/clip.Y4M"), VideoFormat::kY4m);
}

TEST(VideoFormat, UnknownExtensionNamesPathAndChoices) {
    for (const std::string path : {"out.avi", "out", "out.mp4.tmp", "dir.mp4/out", ".y4m"}) {
        expect_input_error([&] { video_format_for_path(path); }, {"'" + path + "'", ".mp4", ".y4m"});
    }
}

TEST(VideoOpen, BadSpecsAreInputErrorsNamingTheField) {
    ScratchDir dir;
    struct Case {
        std::function<void(VideoSpec&)> change;
        std::string field;
    };
    const Case cases[] = {
        {[](VideoSpec& s) { s.width = 0; }, "width"},
        {[](VideoSpec& s) { s.width = -64; }, "width"},
        {[](VideoSpec& s) { s.width = 65; }, "width must be even"},
        {[](VideoSpec& s) { s.height = 0; }, "height"},
        {[](VideoSpec& s) { s.height = 33; }, "height must be even"},
        {[](VideoSpec& s) { s.width = 1 << 20; }, "width"},
        {[](VideoSpec& s) { s.crop_height = 31; }, "crop_height"},
        {[](VideoSpec& s) { s.crop_height = 34; }, "crop_height"},
        {[](VideoSpec& s) { s.crop_height = -2; }, "crop_height"},
        {[](VideoSpec& s) { s.fps = 0; }, "fps"},
        {[](VideoSpec& s) { s.fps = -16; }, "fps"},
    };
    for (const char* name : {"bad.y4m", "bad.mp4"}) {
        const std::string path = dir.file(name);
        for (const Case& c : cases) {
            VideoSpec spec = small_spec();
            c.change(spec);
            expect_input_error([&] { open_video_writer(path, spec); }, {path, c.field});
        }
    }
    EXPECT_TRUE(dir.entries().empty()) << "a rejected spec created a file";
}

TEST(VideoOpen, Mp4EncoderSettingsAreChecked) {
    if (!mp4_supported()) GTEST_SKIP() << "built without MP4 support";
    ScratchDir dir;
    const std::string path = dir.file("bad.mp4");
    VideoSpec spec = small_spec();
    spec.crf = 52;
    expect_input_error([&] { open_video_writer(path, spec); }, {path, "crf", "52"});
    spec = small_spec();
    spec.preset = "turbo";
    expect_input_error([&] { open_video_writer(path, spec); }, {path, "preset", "turbo"});
    EXPECT_TRUE(dir.entries().empty());
}

TEST(VideoOpen, Y4mIgnoresEncoderSettings) {
    ScratchDir dir;
    VideoSpec spec = small_spec();
    spec.crf = 99;
    spec.preset = "turbo";
    auto writer = open_video_writer(dir.file("ok.y4m"), spec);
    writer->finish();
    EXPECT_TRUE(fs::exists(dir.file("ok.y4m")));
}

TEST(VideoOpen, WithoutMp4SupportMp4IsAnInputErrorSuggestingY4m) {
    if (mp4_supported()) GTEST_SKIP() << "this build has MP4 support";
    ScratchDir dir;
    const std::string path = dir.file("out.mp4");
    expect_input_error([&] { open_video_writer(path, small_spec()); }, {path, "MP4", ".y4m"});
    EXPECT_TRUE(dir.entries().empty());
}

TEST(VideoOpen, UnwritableLocationsAreInputErrorsNamingThePath) {
    ScratchDir dir;
    std::ofstream(dir.file("a_file")) << "x";
    fs::create_directory(dir.file("sub.y4m"));
    const std::string missing_dir = dir.file("missing/out.y4m");
    const std::string under_file = dir.file("a_file/out.y4m");
    const std::string is_dir = dir.file("sub.y4m");
    expect_input_error([&] { open_video_writer(missing_dir, small_spec()); }, {missing_dir, "does not exist"});
    expect_input_error([&] { open_video_writer(under_file, small_spec()); }, {under_file, "not a directory"});
    expect_input_error([&] { open_video_writer(is_dir, small_spec()); }, {is_dir, "directory"});
    if (mp4_supported()) {
        const std::string mp4 = dir.file("missing/out.mp4");
        expect_input_error([&] { open_video_writer(mp4, small_spec()); }, {mp4, "does not exist"});
    }
    EXPECT_EQ(dir.entries(), (std::vector<std::string>{"a_file", "sub.y4m"}));
}

TEST(VideoOpen, ReadOnlyDirectoryIsAnInputError) {
    if (::geteuid() == 0) GTEST_SKIP() << "root can write into read-only directories";
    ScratchDir dir;
    const std::string ro = dir.file("ro");
    fs::create_directory(ro);
    ::chmod(ro.c_str(), 0555);
    const std::string path = ro + "/out.y4m";
    expect_input_error([&] { open_video_writer(path, small_spec()); }, {path, "not writable"});
    ::chmod(ro.c_str(), 0755);
}

TEST(VideoOpen, PartialPathIsAHiddenSiblingUniqueToTheWriter) {
    const std::string a = partial_path_for("/data/run/video.mp4");
    EXPECT_EQ(a.rfind("/data/run/.video.mp4.", 0), 0u) << a;
    EXPECT_TRUE(a.ends_with(".partial")) << a;
    EXPECT_NE(a, partial_path_for("/data/run/video.mp4"));  // two writers of one path never share a temporary
    EXPECT_EQ(partial_path_for("video.y4m").rfind(".video.y4m.", 0), 0u);
    EXPECT_EQ(partial_path_for("out/v.y4m").rfind("out/.v.y4m.", 0), 0u);
}

TEST(VideoOpen, WriterReportsItsSpecAndPath) {
    ScratchDir dir;
    VideoSpec spec = small_spec();
    spec.crop_height = 30;
    spec.fps = 24;
    const std::string path = dir.file("s.y4m");
    auto writer = open_video_writer(path, spec);
    EXPECT_EQ(writer->path(), path);
    EXPECT_EQ(writer->spec().width, 64);
    EXPECT_EQ(writer->spec().height, 32);
    EXPECT_EQ(writer->spec().crop_height, 30);
    EXPECT_EQ(writer->spec().fps, 24);
    EXPECT_EQ(writer->frames_written(), 0);
}

}  // namespace
}  // namespace lr
