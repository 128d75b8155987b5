// The MP4 path: RGB24 -> (libswscale) yuv420p, limited range, BT.709 or BT.601 -> (libx264, CRF, GOP of
// 2 s) H.264 -> (libavformat "mp4") the temporary file -> renamed by finish(). Timestamps count frames
// (time base 1/fps), so the frame count and duration are exact. The file is fragmented MP4: an empty moov up
// front, then a moof + mdat fragment at every keyframe and at least every second, so a file cut at any byte
// (a killed run's temporary file, a copy in progress) still plays up to its last complete fragment; finish()
// appends the fragment index (mfra) for seeking.
#include "runtime/video/mp4_writer.h"

#include <climits>
#include <mutex>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
}

#include "runtime/core/check.h"
#include "runtime/video/partial_file.h"
#include "runtime/video/yuv420.h"

namespace lr {
namespace {

constexpr const char* kEncoderName = "libx264";

std::string av_error_text(int err) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(err, buf, sizeof(buf));
    return buf;
}

// libav and x264 report progress and statistics at INFO level; only real errors may reach stderr.
void quiet_libav_logs() {
    static std::once_flag once;
    std::call_once(once, [] { av_log_set_level(AV_LOG_ERROR); });
}

struct FormatDeleter {
    void operator()(AVFormatContext* fmt) const {
        if (fmt->pb != nullptr) avio_closep(&fmt->pb);
        avformat_free_context(fmt);
    }
};
struct CodecDeleter {
    void operator()(AVCodecContext* enc) const { avcodec_free_context(&enc); }
};
struct SwsDeleter {
    void operator()(SwsContext* sws) const { sws_freeContext(sws); }
};
struct FrameDeleter {
    void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
struct PacketDeleter {
    void operator()(AVPacket* pkt) const { av_packet_free(&pkt); }
};
struct DictDeleter {
    void operator()(AVDictionary* dict) const { av_dict_free(&dict); }
};

// The colour tags of the convention in video_writer.h.
struct ColorTags {
    AVColorPrimaries primaries;
    AVColorTransferCharacteristic transfer;
    AVColorSpace matrix;
    int sws_matrix;
};

ColorTags color_tags_for(ColorMatrix matrix) {
    if (matrix == ColorMatrix::kBt709) return {AVCOL_PRI_BT709, AVCOL_TRC_BT709, AVCOL_SPC_BT709, SWS_CS_ITU709};
    return {AVCOL_PRI_SMPTE170M, AVCOL_TRC_SMPTE170M, AVCOL_SPC_SMPTE170M, SWS_CS_SMPTE170M};
}

class Mp4Writer final : public VideoWriter {
  public:
    Mp4Writer(const std::string& path, const VideoSpec& spec)
        : file_(path), spec_(spec), out_rows_(spec.crop_height > 0 ? spec.crop_height : spec.height) {
        quiet_libav_logs();
        const ColorTags tags = color_tags_for(color_matrix_for_rows(out_rows_));
        const AVCodec* codec = avcodec_find_encoder_by_name(kEncoderName);
        LR_ASSERT(codec != nullptr, "open_video_writer checks mp4_supported() first");

        AVFormatContext* fmt = nullptr;
        check(avformat_alloc_output_context2(&fmt, nullptr, "mp4", file_.temp_path().c_str()),
              "creating the MP4 muxer");
        fmt_.reset(fmt);
        stream_ = avformat_new_stream(fmt_.get(), nullptr);
        LR_RUNTIME(stream_ != nullptr, "video '", path, "': cannot create the MP4 video stream (out of memory)");

        enc_.reset(avcodec_alloc_context3(codec));
        LR_RUNTIME(enc_ != nullptr, "video '", path, "': cannot create the H.264 encoder (out of memory)");
        AVCodecContext* enc = enc_.get();
        enc->width = spec_.width;
        enc->height = out_rows_;
        enc->pix_fmt = AV_PIX_FMT_YUV420P;
        enc->time_base = AVRational{1, spec_.fps};
        enc->framerate = AVRational{spec_.fps, 1};
        enc->sample_aspect_ratio = AVRational{1, 1};
        // A keyframe every 2 s: seeking stays quick and a damaged file loses little.
        enc->gop_size = 2 * spec_.fps;
        enc->color_range = AVCOL_RANGE_MPEG;
        enc->color_primaries = tags.primaries;
        enc->color_trc = tags.transfer;
        enc->colorspace = tags.matrix;
        enc->chroma_sample_location = AVCHROMA_LOC_CENTER;  // libswscale averages 2x2 blocks
        if ((fmt_->oformat->flags & AVFMT_GLOBALHEADER) != 0) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

        AVDictionary* opts = nullptr;
        av_dict_set(&opts, "crf", std::to_string(spec_.crf).c_str(), 0);
        av_dict_set(&opts, "preset", spec_.preset.c_str(), 0);
        const int err = avcodec_open2(enc, codec, &opts);
        std::unique_ptr<AVDictionary, DictDeleter> unused(opts);  // the options the encoder did not take
        check(err,
              str_cat("opening the ", kEncoderName, " encoder (crf ", spec_.crf, ", preset '", spec_.preset, "')"));
        LR_ASSERT(av_dict_count(unused.get()) == 0, kEncoderName, " ignored an option");

        check(avcodec_parameters_from_context(stream_->codecpar, enc), "copying the encoder parameters");
        stream_->time_base = enc->time_base;  // a hint: the muxer picks its own in avformat_write_header
        stream_->avg_frame_rate = enc->framerate;
        stream_->sample_aspect_ratio = enc->sample_aspect_ratio;

        // "file:" keeps a colon in the name ("take:2.mp4") from being read as a protocol.
        const std::string url = "file:" + file_.temp_path();
        const int open_err = avio_open(&fmt_->pb, url.c_str(), AVIO_FLAG_WRITE);
        LR_CHECK(open_err >= 0, "cannot write video '", path, "': cannot create '", file_.temp_path(),
                 "': ", av_error_text(open_err));
        AVDictionary* mux_opts = nullptr;
        av_dict_set(&mux_opts, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
        av_dict_set(&mux_opts, "frag_duration", "1000000", 0);  // microseconds: a fragment at least every second
        const int header_err = avformat_write_header(fmt_.get(), &mux_opts);
        std::unique_ptr<AVDictionary, DictDeleter> mux_unused(mux_opts);
        check(header_err, "writing the MP4 header");
        LR_ASSERT(av_dict_count(mux_unused.get()) == 0, "the MP4 muxer ignored an option");

        sws_.reset(sws_getContext(spec_.width, out_rows_, AV_PIX_FMT_RGB24, spec_.width, out_rows_, AV_PIX_FMT_YUV420P,
                                  SWS_BILINEAR | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
        LR_RUNTIME(sws_ != nullptr, "video '", path, "': cannot create the RGB -> YUV converter");
        // Source full-range RGB; destination limited range with the matrix of the tags. For RGB input the
        // first table is unused, but the call needs one.
        const int* rgb_table = sws_getCoefficients(SWS_CS_DEFAULT);
        const int* yuv_table = sws_getCoefficients(tags.sws_matrix);
        LR_RUNTIME(sws_setColorspaceDetails(sws_.get(), rgb_table, 1, yuv_table, 0, 0, 1 << 16, 1 << 16) >= 0,
                   "video '", path, "': libswscale cannot convert to ",
                   tags.sws_matrix == SWS_CS_ITU709 ? "BT.709" : "BT.601");

        frame_.reset(av_frame_alloc());
        pkt_.reset(av_packet_alloc());
        LR_RUNTIME(frame_ != nullptr && pkt_ != nullptr, "video '", path, "': out of memory");
        frame_->format = AV_PIX_FMT_YUV420P;
        frame_->width = spec_.width;
        frame_->height = out_rows_;
        frame_->color_range = AVCOL_RANGE_MPEG;
        frame_->color_primaries = tags.primaries;
        frame_->color_trc = tags.transfer;
        frame_->colorspace = tags.matrix;
        frame_->chroma_location = AVCHROMA_LOC_CENTER;
        check(av_frame_get_buffer(frame_.get(), 0), "allocating a frame");
    }

    void write_frame(const uint8_t* rgb, int64_t stride_bytes) override {
        LR_ASSERT(!finished_, "write_frame on '", path(), "' after finish()");
        LR_RUNTIME(!failed_, "cannot write to video '", path(), "': an earlier write failed");
        LR_ASSERT(rgb != nullptr && stride_bytes >= int64_t{spec_.width} * 3 && stride_bytes <= INT_MAX,
                  "frame stride ", stride_bytes, " for width ", spec_.width);
        try {
            // The encoder may still hold a reference to the previous frame's buffers.
            check(av_frame_make_writable(frame_.get()), "allocating a frame");
            const uint8_t* const src[1] = {rgb};
            const int src_stride[1] = {static_cast<int>(stride_bytes)};
            const int rows = sws_scale(sws_.get(), src, src_stride, 0, out_rows_, frame_->data, frame_->linesize);
            LR_RUNTIME(rows == out_rows_, "video '", path(), "': converting a frame to YUV failed (", rows, " of ",
                       out_rows_, " rows)");
            frame_->pts = frames_;
            encode(frame_.get());
        } catch (...) {
            failed_ = true;
            throw;
        }
        ++frames_;
    }

    void finish() override {
        if (finished_) return;
        LR_RUNTIME(!failed_, "cannot finish video '", path(), "': an earlier write failed");
        try {
            encode(nullptr);  // drains the frames the encoder still holds (lookahead, B-frames)
            check(av_write_trailer(fmt_.get()), "writing the MP4 index");
            check(avio_closep(&fmt_->pb), "closing the file");
            sws_.reset();
            enc_.reset();
            fmt_.reset();
            file_.commit();
        } catch (...) {
            failed_ = true;
            throw;
        }
        finished_ = true;
    }

    int64_t frames_written() const override { return frames_; }
    const std::string& path() const override { return file_.final_path(); }
    const VideoSpec& spec() const override { return spec_; }

  private:
    // A failed libav call: a RuntimeError with libav's own text and the path.
    void check(int err, const std::string& what) const {
        LR_RUNTIME(err >= 0, "video '", file_.final_path(), "': ", what, " failed: ", av_error_text(err));
    }

    // Sends one frame (nullptr: end of stream) and writes every packet the encoder has ready.
    void encode(const AVFrame* frame) {
        check(avcodec_send_frame(enc_.get(), frame), "encoding a frame");
        for (;;) {
            const int err = avcodec_receive_packet(enc_.get(), pkt_.get());
            if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
            check(err, "encoding a frame");
            // One frame per packet; the muxer needs the duration for the last sample.
            if (pkt_->duration == 0) pkt_->duration = 1;
            av_packet_rescale_ts(pkt_.get(), enc_->time_base, stream_->time_base);
            pkt_->stream_index = stream_->index;
            check(av_interleaved_write_frame(fmt_.get(), pkt_.get()), "writing to the file");  // takes the packet
            // The muxer holds a fragment's samples until it closes it, then writes moof + mdat. Flushing after
            // every packet keeps the I/O buffer empty between fragments, so a fragment's header (moof, well under
            // a page) always goes out at the start of one write: a killed process never leaves a torn moof, the
            // one cut that libavformat's demuxer cannot read past.
            avio_flush(fmt_->pb);
        }
    }

    PartialFile file_;  // first member: destroyed last, after the muxer closed the file
    VideoSpec spec_;
    int out_rows_;
    std::unique_ptr<AVFormatContext, FormatDeleter> fmt_;
    AVStream* stream_ = nullptr;  // owned by fmt_
    std::unique_ptr<AVCodecContext, CodecDeleter> enc_;
    std::unique_ptr<SwsContext, SwsDeleter> sws_;
    std::unique_ptr<AVFrame, FrameDeleter> frame_;  // the yuv420p frame handed to the encoder
    std::unique_ptr<AVPacket, PacketDeleter> pkt_;
    int64_t frames_ = 0;
    bool finished_ = false;
    bool failed_ = false;
};

}  // namespace

bool mp4_supported() { return avcodec_find_encoder_by_name(kEncoderName) != nullptr; }

std::unique_ptr<VideoWriter> make_mp4_writer(const std::string& path, const VideoSpec& spec) {
    return std::make_unique<Mp4Writer>(path, spec);
}

}  // namespace lr
