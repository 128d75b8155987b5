// Helpers for the video tests: a scratch directory, frames of the test pattern, an independent Y4M reader
// and YUV -> RGB reference, and ffprobe/ffmpeg driven through popen (the tests skip those checks when the
// programs are not on PATH, e.g. on the GPU machine).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/video/video_writer.h"
#include "runtime/video/yuv420.h"

namespace lr::video_test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it.
class ScratchDir {
  public:
    ScratchDir() {
        std::string tmpl = (fs::temp_directory_path() / "longroll_video_XXXXXX").string();
        const char* made = ::mkdtemp(tmpl.data());
        EXPECT_NE(made, nullptr) << "mkdtemp failed";
        path_ = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    std::string file(const std::string& name) const { return (path_ / name).string(); }
    // Every entry of the directory, hidden ones included, sorted.
    std::vector<std::string> entries() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }

  private:
    fs::path path_;
};

// One pattern frame, compact rows: [height][width][3].
inline std::vector<uint8_t> pattern_frame(int64_t index, int width, int height) {
    std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
    fill_test_pattern(index, width, height, rgb.data(), int64_t{width} * 3);
    return rgb;
}

// One compact frame of writer.spec()'s size.
inline void write_rgb(VideoWriter& writer, const std::vector<uint8_t>& rgb) {
    writer.write_frame(rgb.data(), int64_t{writer.spec().width} * 3);
}

// Writes `frames` pattern frames and finishes.
inline void write_pattern(VideoWriter& writer, int frames) {
    const VideoSpec& spec = writer.spec();
    for (int i = 0; i < frames; ++i) {
        const std::vector<uint8_t> rgb = pattern_frame(i, spec.width, spec.height);
        writer.write_frame(rgb.data(), int64_t{spec.width} * 3);
    }
    writer.finish();
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A Y4M file as this reader understands it (no dependency on the writer's code).
struct Y4mFile {
    std::string header;  // the first line, without '\n'
    int width = 0;
    int height = 0;
    std::vector<std::vector<uint8_t>> frames;  // [frames][Y plane, U plane, V plane]
};

inline Y4mFile read_y4m(const std::string& path) {
    Y4mFile y4m;
    const std::string data = read_file(path);
    const size_t eol = data.find('\n');
    if (eol == std::string::npos) {
        ADD_FAILURE() << path << ": no Y4M header line";
        return y4m;
    }
    y4m.header = data.substr(0, eol);
    std::istringstream tokens(y4m.header);
    std::string token;
    while (tokens >> token) {
        if (token[0] == 'W') y4m.width = std::stoi(token.substr(1));
        if (token[0] == 'H') y4m.height = std::stoi(token.substr(1));
    }
    const size_t frame_bytes = static_cast<size_t>(y4m.width) * y4m.height * 3 / 2;
    size_t pos = eol + 1;
    while (pos < data.size()) {
        if (data.compare(pos, 6, "FRAME\n") != 0 || pos + 6 + frame_bytes > data.size()) {
            ADD_FAILURE() << path << ": malformed frame " << y4m.frames.size() << " at byte " << pos;
            break;
        }
        pos += 6;
        y4m.frames.emplace_back(data.begin() + static_cast<std::ptrdiff_t>(pos),
                                data.begin() + static_cast<std::ptrdiff_t>(pos + frame_bytes));
        pos += frame_bytes;
    }
    return y4m;
}

// Limited-range YUV 4:2:0 -> RGB24 with the textbook formulas in double precision, each chroma sample
// covering its 2x2 block. Independent of rgb24_to_yuv420.
inline std::vector<uint8_t> yuv420_to_rgb_reference(const std::vector<uint8_t>& yuv, int width, int height,
                                                    ColorMatrix matrix) {
    const double kr = matrix == ColorMatrix::kBt709 ? 0.2126 : 0.299;
    const double kb = matrix == ColorMatrix::kBt709 ? 0.0722 : 0.114;
    const double kg = 1.0 - kr - kb;
    const size_t luma = static_cast<size_t>(width) * height;
    std::vector<uint8_t> rgb(luma * 3);
    auto to_byte = [](double x) { return static_cast<uint8_t>(std::clamp(std::lround(x * 255.0), 0L, 255L)); };
    for (int y = 0; y < height; ++y) {
        for (int x = 0; x < width; ++x) {
            const size_t c = static_cast<size_t>(y / 2) * (width / 2) + x / 2;
            const double yy = (yuv[static_cast<size_t>(y) * width + x] - 16.0) / 219.0;
            const double pb = (yuv[luma + c] - 128.0) / 224.0;
            const double pr = (yuv[luma + luma / 4 + c] - 128.0) / 224.0;
            const double r = yy + 2.0 * (1.0 - kr) * pr;
            const double b = yy + 2.0 * (1.0 - kb) * pb;
            const double g = (yy - kr * r - kb * b) / kg;
            uint8_t* px = &rgb[(static_cast<size_t>(y) * width + x) * 3];
            px[0] = to_byte(r);
            px[1] = to_byte(g);
            px[2] = to_byte(b);
        }
    }
    return rgb;
}

// Mean absolute error of each channel between two RGB24 images of the same size.
inline std::array<double, 3> mean_abs_error(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    std::array<double, 3> sum = {0, 0, 0};
    EXPECT_EQ(a.size(), b.size());
    const size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) sum[i % 3] += std::abs(int{a[i]} - int{b[i]});
    for (double& s : sum) s /= static_cast<double>(std::max<size_t>(1, n / 3));
    return sum;
}

inline double max_channel(const std::array<double, 3>& e) { return std::max({e[0], e[1], e[2]}); }

inline bool have_program(const std::string& name) {
    return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

inline bool have_ffmpeg_tools() { return have_program("ffprobe") && have_program("ffmpeg"); }

// Runs a shell command and returns its stdout (binary-safe); a non-zero exit status fails the test.
inline std::string run_command(const std::string& cmd) {
    std::string out;
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (pipe == nullptr) {
        ADD_FAILURE() << "popen failed: " << cmd;
        return out;
    }
    std::array<char, 1 << 16> buf{};
    size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
    const int status = ::pclose(pipe);
    EXPECT_EQ(status, 0) << "command failed: " << cmd;
    return out;
}

// ffprobe's view of the first video stream (decoding every frame to count them) plus the duration.
inline std::map<std::string, std::string> probe(const std::string& path) {
    const std::string out = run_command(
        "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
        "stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_frames,color_range,color_space,"
        "color_primaries,color_transfer,chroma_location:format=duration -of default=noprint_wrappers=1 '" +
        path + "'");
    std::map<std::string, std::string> fields;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
        const size_t eq = line.find('=');
        if (eq != std::string::npos) fields[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return fields;
}

// Every frame decoded by ffmpeg to RGB24 [frames][height][width][3], reading YUV as limited range with
// the given matrix (stated, not guessed, so that a writer using the wrong matrix fails the comparison).
inline std::vector<std::vector<uint8_t>> decode_with_ffmpeg(const std::string& path, int width, int height,
                                                            ColorMatrix matrix) {
    const std::string cmd = std::string("ffmpeg -v error -i '") + path +
                            "' -vf scale=in_color_matrix=" + (matrix == ColorMatrix::kBt709 ? "bt709" : "bt601") +
                            ":in_range=limited:out_range=full -pix_fmt rgb24 -f rawvideo -";
    const std::string raw = run_command(cmd);
    const size_t frame_bytes = static_cast<size_t>(width) * height * 3;
    EXPECT_EQ(raw.size() % frame_bytes, 0u) << "decoded size " << raw.size() << " is not whole frames";
    std::vector<std::vector<uint8_t>> frames;
    for (size_t pos = 0; pos + frame_bytes <= raw.size(); pos += frame_bytes) {
        frames.emplace_back(raw.begin() + static_cast<std::ptrdiff_t>(pos),
                            raw.begin() + static_cast<std::ptrdiff_t>(pos + frame_bytes));
    }
    return frames;
}

// The top `rows` rows of a compact RGB24 image.
inline std::vector<uint8_t> top_rows(const std::vector<uint8_t>& rgb, int width, int rows) {
    return {rgb.begin(), rgb.begin() + static_cast<std::ptrdiff_t>(width) * rows * 3};
}

}  // namespace lr::video_test
