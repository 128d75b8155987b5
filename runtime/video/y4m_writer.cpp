// Y4M layout: one text header line, then per frame "FRAME\n" and the Y, U, V planes. The header says
// 4:2:0 with centred chroma (C420jpeg, matching the 2x2 averages of rgb24_to_yuv420) and limited range
// (XCOLORRANGE=LIMITED, the extension FFmpeg reads and writes). Y4M has no field for the matrix: see the
// colour convention in video_writer.h.
#include "runtime/video/y4m_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/video/partial_file.h"
#include "runtime/video/yuv420.h"

namespace lr {
namespace {

class Y4mWriter final : public VideoWriter {
  public:
    Y4mWriter(const std::string& path, const VideoSpec& spec)
        : file_(path),
          spec_(spec),
          out_rows_(spec.crop_height > 0 ? spec.crop_height : spec.height),
          matrix_(color_matrix_for_rows(out_rows_)),
          yuv_(static_cast<size_t>(spec.width) * out_rows_ * 3 / 2) {
        fp_.reset(std::fopen(file_.temp_path().c_str(), "wb"));
        LR_CHECK(fp_ != nullptr, "cannot write video '", path, "': cannot create '", file_.temp_path(),
                 "': ", std::strerror(errno));
        // Large buffer: each frame goes out in a few big writes instead of many 4 KiB ones.
        std::setvbuf(fp_.get(), nullptr, _IOFBF, size_t{1} << 20);
        const std::string header = str_cat("YUV4MPEG2 W", spec_.width, " H", out_rows_, " F", spec_.fps,
                                           ":1 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED\n");
        write_bytes(header.data(), header.size());
    }

    void write_frame(const uint8_t* rgb, int64_t stride_bytes) override {
        LR_ASSERT(!finished_, "write_frame on '", path(), "' after finish()");
        LR_RUNTIME(!failed_, "cannot write to video '", path(), "': an earlier write failed");
        LR_ASSERT(rgb != nullptr && stride_bytes >= int64_t{spec_.width} * 3, "frame stride ", stride_bytes,
                  " for width ", spec_.width);
        const size_t luma = static_cast<size_t>(spec_.width) * out_rows_;
        uint8_t* y = yuv_.data();
        rgb24_to_yuv420(rgb, stride_bytes, spec_.width, out_rows_, matrix_, y, y + luma, y + luma + luma / 4);
        static constexpr char kFrameTag[] = "FRAME\n";
        write_bytes(kFrameTag, sizeof(kFrameTag) - 1);
        write_bytes(yuv_.data(), yuv_.size());
        ++frames_;
    }

    void finish() override {
        if (finished_) return;
        LR_RUNTIME(!failed_, "cannot finish video '", path(), "': an earlier write failed");
        const int rc = std::fclose(fp_.release());
        if (rc != 0) {
            failed_ = true;
            LR_RUNTIME(false, "cannot write video '", file_.temp_path(), "': ", std::strerror(errno));
        }
        file_.commit();
        finished_ = true;
    }

    int64_t frames_written() const override { return frames_; }
    const std::string& path() const override { return file_.final_path(); }
    const VideoSpec& spec() const override { return spec_; }

  private:
    struct FileCloser {
        void operator()(std::FILE* fp) const { std::fclose(fp); }
    };

    void write_bytes(const void* data, size_t size) {
        if (std::fwrite(data, 1, size, fp_.get()) != size) {
            failed_ = true;
            LR_RUNTIME(false, "cannot write video '", file_.temp_path(), "': ", std::strerror(errno));
        }
    }

    PartialFile file_;  // first member: destroyed last, after fp_ is closed
    VideoSpec spec_;
    int out_rows_;
    ColorMatrix matrix_;
    std::vector<uint8_t> yuv_;                   // [out_rows * width * 3/2]: Y, then U, then V
    std::unique_ptr<std::FILE, FileCloser> fp_;  // null once finish() closed it
    int64_t frames_ = 0;
    bool finished_ = false;
    bool failed_ = false;
};

}  // namespace

std::unique_ptr<VideoWriter> make_y4m_writer(const std::string& path, const VideoSpec& spec) {
    return std::make_unique<Y4mWriter>(path, spec);
}

}  // namespace lr
