// The CUDA VAE decode split by rows across the ranks of mpirun (DESIGN.md sections 5 and 7), every rank on the GPU
// it finds (one GPU may hold them all), over the MPI world (host buffers: the decoder stages through pinned
// memory): every rank decodes its latent rows with halo exchange, rank 0 gathers the frames, against
// CudaVaeStream without a split on rank 0. A stream of chunks (1, then 3, then 2 latent frames: the first frame,
// the time convs and their causal caches), 5 latent rows split unevenly over 2 or 3 ranks:
//   - the tiny embedded VAE (host weights), planar floats and RGB bytes;
//   - the real channel counts with weights drawn on the device (with_random_weights: the wgmma conv tiles).
// With one rank the split is off and the frames must be bit-identical. With more, every conv kernel, norm and
// softmax computes each of the rank's rows exactly as the whole frame does, but the 1x1 convs and the attention's
// GEMMs go through cuBLASLt with fewer rows, whose algorithm choice may change the fp32 summation order and so,
// rarely, a bf16 rounding of q/k/v or of the attention output. Such a flip is one bf16 ulp (2^-8 relative) of one
// element, damped by everything after it, so the frames must stay within a tenth of the bf16-versus-fp32 error of
// the whole decoder (tests/gpu/test_vae_gpu.cpp: 3e-2 relative): relative L2 error 3e-3, max |diff| 3e-2 on the
// floats, and on the bytes a mean |diff| under 0.05 levels. The measured values are printed ("[ measured ]"); on an
// H100 with 2 and 3 ranks every case was bit-identical.
// Then: a split with more ranks than latent rows is an InputError on every rank, and the memory plan of a 2-rank
// split at 1088p holds about half the whole decoder's activations per rank. Exit 77 when a rank sees no GPU.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist_test_harness.h"
#include "runtime/core/check.h"
#include "runtime/core/cuda_check.h"
#include "runtime/vae/wan_vae.h"
#include "runtime/vae/wan_vae_cuda.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

using disttest::Errors;

constexpr int64_t kH = 5, kW = 6;  // latent rows and columns
const std::vector<int64_t> kChunks = {1, 3, 2};

int64_t total_latents() {
    int64_t n = 0;
    for (const int64_t c : kChunks) n += c;
    return n;
}

// The frames a stream emits over kChunks of `latents` [frames, z, kH, kW], concatenated: floats of planar frames
// or RGB bytes (as floats) of rgb24 frames; empty where the stream does not emit.
std::vector<float> decode(CudaVaeStream& stream, const std::vector<float>& latents, int64_t z_dim) {
    std::vector<float> out;
    const int64_t per_latent = z_dim * kH * kW;
    int64_t done = 0;
    for (const int64_t n : kChunks) {
        stream.decode(latents.data() + done * per_latent, n, [&](const VaeFrame& f) {
            const int64_t count = 3 * f.height * f.width;
            if (f.planar) out.insert(out.end(), f.planar, f.planar + count);
            if (f.rgb24) out.insert(out.end(), f.rgb24, f.rgb24 + count);
        });
        done += n;
    }
    return out;
}

// One case: the split decode on every rank, the whole-frame decode on rank 0, compared there.
struct Case {
    std::string name;
    std::function<CudaVaeStream(Communicator*)> make;  // the stream, split over the argument (nullptr: whole)
    int64_t z_dim = 16;
    bool bytes = false;  // rgb24 frames
};

void run_case(const Case& c, Communicator& world, const std::vector<float>& latents, Errors& e) {
    const int n = world.size(), me = world.rank();
    const int64_t want_frames = 1 + 4 * (total_latents() - 1);
    std::vector<float> got;
    {
        CudaVaeStream split = c.make(&world);
        e.expect(split.emits() == (me == 0), c.name + ": only rank 0 emits");
        world.reset_byte_counters();
        got = decode(split, latents, c.z_dim);
        e.expect(split.frames_emitted() == want_frames, c.name + ": " + std::to_string(split.frames_emitted()) +
                                                            " frames decoded, expected " + std::to_string(want_frames));
        if (n > 1) e.expect(world.bytes_sent(CommOp::kSendRecv) > 0, c.name + ": no halo rows were exchanged");
    }
    if (me != 0) {
        e.expect(got.empty(), c.name + ": a rank other than 0 emitted frames");
        return;
    }
    CudaVaeStream whole = c.make(nullptr);
    const std::vector<float> want = decode(whole, latents, c.z_dim);
    const int64_t frame_values = 3 * 8 * kH * 8 * kW;
    e.expect(static_cast<int64_t>(want.size()) == want_frames * frame_values && got.size() == want.size(),
             c.name + ": " + std::to_string(got.size()) + " values emitted, the whole-frame decode emits " +
                 std::to_string(want.size()));
    if (got.size() != want.size()) return;
    double max_abs = 0, num = 0, den = 0, sum_abs = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
        max_abs = std::isnan(d) ? INFINITY : std::max(max_abs, d);
        sum_abs += d;
        num += d * d;
        den += static_cast<double>(want[i]) * want[i];
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30)), mean_abs = sum_abs / static_cast<double>(want.size());
    const bool identical = std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0;
    std::printf("[ measured ] %d ranks, %s: %" PRId64 " frames of %" PRId64 "x%" PRId64
                ", bit-identical: %s, max |diff| %.3g, mean |diff| %.3g, relative L2 %.3g\n",
                n, c.name.c_str(), want_frames, 8 * kH, 8 * kW, identical ? "yes" : "no", max_abs, mean_abs, rel);
    std::fflush(stdout);
    if (n == 1) {
        e.expect(identical, c.name + ": one rank (no split) differs from the whole-frame decode");
    } else if (c.bytes) {
        e.expect(mean_abs < 0.05, c.name + ": mean |diff| " + std::to_string(mean_abs) + " levels");
    } else {
        e.expect(rel < 3e-3 && max_abs < 3e-2,
                 c.name + ": relative L2 " + std::to_string(rel) + ", max |diff| " + std::to_string(max_abs));
    }
}

int run(const MpiSession& mpi) {
    auto world = MpiCommunicator::world();
    const int n = world->size(), me = world->rank();
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    int64_t without_gpu = devices > 0 ? 0 : 1;
    world->all_reduce_sum(&without_gpu, 1);
    if (without_gpu > 0) {
        if (me == 0) std::printf("dist_vae_rows_gpu_test: %" PRId64 " ranks see no GPU: skipping\n", without_gpu);
        return 77;
    }
    LR_CUDA_CHECK(cudaSetDevice(pick_cuda_device(mpi.info(), devices)));
    Errors e(me);

    const WanVaeDecoder tiny = WanVaeDecoder::make_default();
    const WanVaeConfig real;
    const std::vector<float> latents = test::gaussian(total_latents() * real.z_dim * kH * kW, 31);
    LR_ASSERT(tiny.config().z_dim == real.z_dim, "both VAEs take 16-channel latents");
    const std::vector<Case> cases = {
        {"tiny VAE, planar",
         [&](Communicator* rows) { return CudaVaeStream(tiny, kH, kW, VaeFrameFormat::kFloatPlanar, nullptr, rows); },
         real.z_dim, false},
        {"tiny VAE, rgb24",
         [&](Communicator* rows) { return CudaVaeStream(tiny, kH, kW, VaeFrameFormat::kRgb24, nullptr, rows); },
         real.z_dim, true},
        {"real channels (random weights), planar",
         [&](Communicator* rows) {
             return CudaVaeStream::with_random_weights(real, kH, kW, 5, VaeFrameFormat::kFloatPlanar, nullptr, rows);
         },
         real.z_dim, false},
    };
    for (const Case& c : cases) run_case(c, *world, latents, e);

    // More ranks than latent rows: refused on every rank before any exchange or allocation.
    if (n > 1) {
        bool refused = false, planned = false;
        try {
            CudaVaeStream stream(tiny, n - 1, kW, VaeFrameFormat::kRgb24, nullptr, world.get());
        } catch (const InputError& err) {
            refused = std::string(err.what()).find("every rank needs at least one row") != std::string::npos;
        }
        try {
            CudaVaeStream::device_bytes(real, n - 1, kW, n, me);
            planned = true;
        } catch (const InputError&) {
        }
        e.expect(refused && !planned, "a split of " + std::to_string(n - 1) + " latent rows over " + std::to_string(n) +
                                          " ranks was not refused with an InputError");
    }

    // The memory plan at 1088p (latent 136x240): each of 2 ranks holds its half of the rows (plus halos, the
    // attention's whole-frame k and v, and on rank 0 the whole output frame).
    const size_t whole = CudaVaeStream::device_bytes(real, 136, 240);
    for (int r = 0; r < 2; ++r) {
        const size_t half = CudaVaeStream::device_bytes(real, 136, 240, 2, r);
        if (me == 0) {
            std::printf("[ measured ] 1088p plan: whole frame %.2f GB, rank %d of a 2-rank split %.2f GB\n",
                        static_cast<double>(whole) / 1e9, r, static_cast<double>(half) / 1e9);
        }
        e.expect(half < whole * 6 / 10, "rank " + std::to_string(r) + " of a 2-rank split plans " +
                                            std::to_string(half) + " bytes, the whole frame " + std::to_string(whole));
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_vae_rows_gpu_test: %d ranks on %d GPU(s), %" PRId64 " errors: %s\n", n, devices, total,
                    total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(mpi); });
}
