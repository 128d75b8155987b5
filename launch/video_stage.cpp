#include "launch/video_stage.h"

#include "runtime/core/check.h"
#include "runtime/core/device.h"

namespace lr {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

DitVideoSink::DitVideoSink(const WanVaeDecoder& vae, VideoWriter& writer, const LatentFrameShape& shape,
                           ChunkVideoFn done, int gpu)
    : shape_(shape), last_done_(Clock::now()) {
    if (gpu >= 0) {
        cuda_use_device(gpu);
        gpu_stream_ = std::make_unique<CudaVaeStream>(vae, shape.height, shape.width, VaeFrameFormat::kRgb24);
    } else {
        stream_.emplace(vae, VaeFrameFormat::kRgb24);
    }
    auto emit = [this, &writer](const VaeFrame& f) {
        const auto t0 = Clock::now();
        writer.write_frame(f.rgb24, f.width * 3);
        encode_seconds_ += seconds_since(t0);
    };
    auto chunk_done = [this, done = std::move(done)](const VaeChunkDone& d) {
        ChunkVideo v;
        v.index = d.index;
        v.latent_frames = d.latent_frames;
        v.frames = d.frames;
        v.encode_seconds = encode_seconds_;
        v.decode_seconds = d.seconds - encode_seconds_;
        v.interval_seconds = seconds_since(last_done_);
        last_done_ = Clock::now();
        encode_seconds_ = 0;
        if (done) done(v);
    };
    if (gpu_stream_) {
        CudaVaeStream* gs = gpu_stream_.get();
        auto decode = [gs, gpu](const float* latents, int64_t frames, const VaeFrameFn& emit_frame) {
            cuda_use_device(gpu);  // the pipeline thread's current device
            const int64_t before = gs->frames_emitted();
            gs->decode(latents, frames, emit_frame);
            return gs->frames_emitted() - before;
        };
        pipeline_ = std::make_unique<VaePipeline>(std::move(decode), shape.channels, shape.height, shape.width,
                                                  std::move(emit), std::move(chunk_done));
    } else {
        pipeline_ =
            std::make_unique<VaePipeline>(*stream_, shape.height, shape.width, std::move(emit), std::move(chunk_done));
    }
}

DitVideoSink::DitVideoSink(Communicator& group, std::vector<int> vae_ranks, const LatentFrameShape& shape)
    : shape_(shape), group_(&group), vae_ranks_(std::move(vae_ranks)) {
    LR_ASSERT(!vae_ranks_.empty(), "DiT -> VAE: no VAE ranks");
}

void DitVideoSink::push(const RolloutChunk& c) {
    if (pipeline_) {
        pipeline_->push(c.index, c.latents, c.num_frames);
    } else if (group_) {
        // The whole chunk to every VAE rank, which takes its rows: latents are small next to the frames.
        const size_t bytes = static_cast<size_t>(c.num_frames * shape_.numel()) * sizeof(float);
        std::vector<SendSpec> sends;
        for (const int r : vae_ranks_) sends.push_back({r, c.latents, bytes});
        group_->send_recv(sends, {});
    }
}

void DitVideoSink::finish() {
    if (pipeline_) pipeline_->finish();
}

int64_t run_vae_rank(Communicator& group, Communicator& rows, const WanVaeDecoder& vae, VideoWriter* writer,
                     const LatentFrameShape& shape, const std::vector<int64_t>& chunk_frames, const ChunkVideoFn& done,
                     int gpu, Stream rows_stream, const std::function<bool(int64_t)>& stop_after) {
    LR_ASSERT((writer != nullptr) == (rows.rank() == 0), "VAE rank ", rows.rank(), ": only the first one writes");
    // One of the two decoders; both emit the frames on rows' rank 0 only and count them on every rank.
    std::optional<VaeStream> cpu;
    std::unique_ptr<CudaVaeStream> cuda;
    if (gpu >= 0) {
        cuda_use_device(gpu);
        cuda = std::make_unique<CudaVaeStream>(vae, shape.height, shape.width, VaeFrameFormat::kRgb24, nullptr, &rows,
                                               rows_stream);
    } else {
        cpu.emplace(vae, VaeFrameFormat::kRgb24, &rows);
    }
    const auto frames_emitted = [&] { return cuda ? cuda->frames_emitted() : cpu->frames_emitted(); };
    std::vector<float> latents;
    double encode_s = 0;
    const auto emit = [&](const VaeFrame& f) {
        const auto t0 = Clock::now();
        writer->write_frame(f.rgb24, f.width * 3);
        encode_s += seconds_since(t0);
    };
    auto last_done = Clock::now();
    for (size_t i = 0; i < chunk_frames.size(); ++i) {
        const int64_t n = chunk_frames[i];
        latents.resize(static_cast<size_t>(n * shape.numel()));
        const auto t0 = Clock::now();
        const RecvSpec recv{0, latents.data(), latents.size() * sizeof(float)};
        group.send_recv({}, {&recv, 1});
        const double wait_s = seconds_since(t0);
        const bool last = stop_after && stop_after(static_cast<int64_t>(i));
        const auto t1 = Clock::now();
        const int64_t before = frames_emitted();
        encode_s = 0;
        if (cuda) {
            cuda->decode(latents.data(), n, emit);
        } else {
            cpu->decode(latents.data(), n, shape.height, shape.width, emit);
        }
        ChunkVideo v;
        v.index = static_cast<int64_t>(i);
        v.latent_frames = n;
        v.frames = frames_emitted() - before;
        v.wait_seconds = wait_s;
        v.encode_seconds = encode_s;
        v.decode_seconds = seconds_since(t1) - encode_s;
        v.interval_seconds = seconds_since(last_done);
        last_done = Clock::now();
        if (done) done(v);
        if (last) break;
    }
    return frames_emitted();
}

}  // namespace lr
