// The VAE decode split by rows across ranks (DESIGN.md sections 5 and 7) with the tiny embedded VAE: every rank
// decodes its latent rows with halo exchange, rank 0 gathers the frames, and they are bit-identical to the
// whole-frame decode computed on one rank, as planar floats and as RGB bytes, over a stream of chunks (1 + 3
// latent frames: the first frame, the time convs and their caches). 5 latent rows split unevenly over 2 or 3
// ranks; a split with more ranks than rows is an InputError on every rank. Run under mpirun; exit 0 when every
// rank passed.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dist/fault.h"
#include "dist/mpi_communicator.h"
#include "dist/process.h"
#include "dist_test_harness.h"
#include "runtime/core/check.h"
#include "runtime/vae/wan_vae.h"
#include "tests/unit/model/model_test_util.h"

namespace lr {
namespace {

using disttest::Errors;

constexpr int64_t kH = 5, kW = 6;  // latent rows and columns

// The frames of decoding `latents` [frames, z, kH, kW] in chunks of 1 and 3, concatenated: floats of planar frames
// or RGB bytes (as floats) of rgb24 frames; empty where the stream does not emit.
std::vector<float> decode(const WanVaeDecoder& vae, const std::vector<float>& latents, VaeFrameFormat format,
                          Communicator* rows, int64_t* frames) {
    VaeStream stream(vae, format, rows);
    std::vector<float> out;
    const int64_t per_latent = vae.config().z_dim * kH * kW;
    int64_t done = 0;
    for (const int64_t n : {int64_t{1}, int64_t{3}}) {
        stream.decode(latents.data() + done * per_latent, n, kH, kW, [&](const VaeFrame& f) {
            const int64_t count = 3 * f.height * f.width;
            if (f.planar) out.insert(out.end(), f.planar, f.planar + count);
            if (f.rgb24) out.insert(out.end(), f.rgb24, f.rgb24 + count);
        });
        done += n;
    }
    *frames = stream.frames_emitted();
    return out;
}

int run() {
    auto world = MpiCommunicator::world();
    const int n = world->size();
    const int me = world->rank();
    Errors e(me);
    const WanVaeDecoder vae = WanVaeDecoder::make_default();
    const std::vector<float> latents = test::gaussian(4 * vae.config().z_dim * kH * kW, 31);

    for (const VaeFrameFormat format : {VaeFrameFormat::kFloatPlanar, VaeFrameFormat::kRgb24}) {
        const std::string name = format == VaeFrameFormat::kRgb24 ? "rgb24" : "planar";
        int64_t ref_frames = 0, got_frames = 0;
        world->reset_byte_counters();
        const std::vector<float> got = decode(vae, latents, format, world.get(), &got_frames);
        const uint64_t halo_and_rows = world->bytes_sent(CommOp::kSendRecv);
        e.expect(got_frames == 13, name + ": " + std::to_string(got_frames) + " frames decoded, expected 1 + 3 x 4");
        if (me == 0) {
            const std::vector<float> ref = decode(vae, latents, format, nullptr, &ref_frames);
            e.expect(ref_frames == got_frames && got.size() == ref.size(),
                     name + ": " + std::to_string(got.size()) + " values emitted, the whole-frame decode emits " +
                         std::to_string(ref.size()));
            e.expect(std::memcmp(got.data(), ref.data(), std::min(got.size(), ref.size()) * sizeof(float)) == 0,
                     name + ": the row-split frames differ from the whole-frame decode");
            std::printf(
                "dist_vae_rows_test: %d ranks, %s: %" PRId64 " frames of %" PRId64 "x%" PRId64
                ", bit-identical: %s; rank 0 sent %" PRIu64 " bytes of halos and rows\n",
                n, name.c_str(), got_frames, 8 * kH, 8 * kW,
                got.size() == ref.size() && std::memcmp(got.data(), ref.data(), got.size() * 4) == 0 ? "yes" : "NO",
                halo_and_rows);
        } else {
            e.expect(got.empty(), name + ": a rank other than 0 emitted frames");
        }
        if (n > 1) e.expect(halo_and_rows > 0, name + ": no halo rows were exchanged");
    }

    // More ranks than latent rows: refused on every rank before any exchange.
    if (n > 1) {
        bool refused = false;
        try {
            VaeStream stream(vae, VaeFrameFormat::kRgb24, world.get());
            const std::vector<float> small(static_cast<size_t>(vae.config().z_dim * (n - 1) * kW), 0.5f);
            stream.decode(small.data(), 1, n - 1, kW, [](const VaeFrame&) {});
        } catch (const InputError& err) {
            refused = std::string(err.what()).find("every rank needs at least one row") != std::string::npos;
        }
        e.expect(refused, "a split of " + std::to_string(n - 1) + " latent rows over " + std::to_string(n) +
                              " ranks was not refused with an InputError");
    }

    const int64_t total = disttest::agree(*world, e);
    if (me == 0)
        std::printf("dist_vae_rows_test: %d ranks, %" PRId64 " errors: %s\n", n, total, total ? "FAILED" : "ok");
    return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lr

int main() {
    lr::MpiSession mpi;
    return lr::run_rank_guarded(mpi, [&] { return lr::run(); });
}
