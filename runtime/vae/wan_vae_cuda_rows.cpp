// The row split of the CUDA VAE decoder (wan_vae_cuda.h; the CPU's is VaeStream's in wan_vae.cpp): which rows a
// rank decodes, the buffers the exchanges need, and the three exchanges, each collective over the rows
// communicator and made in the same order on every rank:
//   exchange_halo  before every conv with a 3x3 spatial kernel: the rank's first and last rows of the conv's input
//                  to the ranks above and below, their last and first rows into its halo rows (zeros at the frame's
//                  top and bottom). A frame buffer is channels-last [rows, width, ch], so a row is contiguous.
//   gather_kv      the middle attention: every rank's k and v rows, all-gathered into the whole frame's k and v.
//   gather_frame   the RGB rows of every output frame to rank 0, which alone emits.
//
// Transport. A communicator on device buffers (NCCL) works on its own stream: collective() makes that stream wait
// for the decode's work so far (an event), enqueues the operation and makes the decode's stream wait for it, so
// the host never blocks; halo rows go straight from and into the frame buffers. A communicator on host buffers
// (MPI) reads and writes pinned staging: the rows are copied out, the stream is synchronised, the communicator
// returns complete, and the copies back in are enqueued. The staging is free to be overwritten by the next
// exchange because that one synchronises the stream before its communicator call.
#include <algorithm>
#include <vector>

#include "dist/communicator.h"
#include "runtime/core/check.h"
#include "runtime/vae/wan_vae.h"
#include "runtime/vae/wan_vae_cuda_state.h"

#ifdef LONGROLL_HAS_CUDA
#include "kernels/vae_cuda.h"
#include "runtime/core/cuda_check.h"
#endif

namespace lr {

void CudaVaeStream::State::set_rows(Communicator* comm, Stream comm_stream_, int ranks_, int rank_) {
    row_comm = comm;
    comm_stream = comm_stream_;
    ranks = comm ? comm->size() : ranks_;
    rank = comm ? comm->rank() : rank_;
    LR_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "CUDA VAE row split: rank ", rank, " of ", ranks);
    latent_rows.clear();
    if (!split()) return;
    for (int r = 0; r < ranks; ++r) {
        const auto [first, end] = vae_row_range(height, ranks, r);  // InputError on every rank: too many ranks
        latent_rows.emplace_back(first, end - first);
    }
    LR_CHECK(comm == nullptr || !comm->device_buffers() || comm_stream != nullptr,
             "CUDA VAE row split: a communicator on device buffers needs its stream (comm_stream)");
}

bool CudaVaeStream::State::device_comm() const { return split() && row_comm != nullptr && row_comm->device_buffers(); }

// The device buffers of the split (after the rest of the plan): the attention's all-gather, and the widest row a
// halo exchange moves (for the pinned staging of a host-buffer communicator).
void CudaVaeStream::State::plan_rows(Carver& c) {
    kv_px = 0;
    kv_send = kv_recv = nullptr;
    halo_row_elems = 0;
    if (!split()) return;
    if (attn_level >= 0) {
        int64_t most = 0;
        for (const auto& [first, count] : latent_rows) most = std::max(most, count);
        kv_px = (most << attn_level) * levels[static_cast<size_t>(attn_level)].width;
        kv_send = c.take<uint16_t>(2 * kv_px * attn_c);
        kv_recv = c.take<uint16_t>(ranks * 2 * kv_px * attn_c);
    }
    // The frames exchanged: the cached inputs of the 3x3 convs and the upsampled frames.
    for (const auto& [level, ch] : ring_specs)
        halo_row_elems = std::max(halo_row_elems, levels[static_cast<size_t>(level)].width * ch);
    for (const LevelDev& L : levels) halo_row_elems = std::max(halo_row_elems, L.width * L.cup);
}

size_t CudaVaeStream::State::staging_bytes() const {
#ifdef LONGROLL_HAS_CUDA
    return halo_host.size() + kv_host.size();
#else
    return 0;
#endif
}

#ifdef LONGROLL_HAS_CUDA

void CudaVaeStream::State::allocate_rows() {
    if (!split()) return;
    if (device_comm()) {
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&comm_ready, cudaEventDisableTiming));
        LR_CUDA_CHECK(cudaEventCreateWithFlags(&comm_done, cudaEventDisableTiming));
        return;
    }
    halo_host = vae_cuda::PinnedBuffer(static_cast<size_t>(4 * halo_row_elems) * sizeof(uint16_t));
    if (attn_level >= 0)
        kv_host = vae_cuda::PinnedBuffer(static_cast<size_t>((1 + ranks) * 2 * kv_px * attn_c) * sizeof(uint16_t));
}

// Runs `op` (an operation of a device-buffer communicator) after the work enqueued so far on the decode's stream,
// and the work enqueued after it once `op` is done.
void CudaVaeStream::State::collective(const std::function<void()>& op) {
    LR_CUDA_CHECK(cudaEventRecord(comm_ready, stream));
    LR_CUDA_CHECK(cudaStreamWaitEvent(comm_stream, comm_ready, 0));
    op();
    LR_CUDA_CHECK(cudaEventRecord(comm_done, comm_stream));
    LR_CUDA_CHECK(cudaStreamWaitEvent(stream, comm_done, 0));
}

// Fills the halo rows of `frame` (a frame buffer of level L, [rows + 2, width, ch] bf16) with the last row of the
// rank above and the first row of the rank below, or zeros at the frame's top and bottom (the conv's padding).
void CudaVaeStream::State::exchange_halo(const LevelDev& L, uint16_t* frame, int64_t ch) {
    if (!split()) return;
    const size_t row = static_cast<size_t>(L.width * ch) * sizeof(uint16_t);
    char* top = reinterpret_cast<char*>(frame);
    char* first = top + row;
    char* last = top + static_cast<size_t>(L.height) * row;
    char* bottom = last + row;
    const bool above = rank > 0, below = rank + 1 < ranks;
    if (!above) LR_CUDA_CHECK(cudaMemsetAsync(top, 0, row, stream));
    if (!below) LR_CUDA_CHECK(cudaMemsetAsync(bottom, 0, row, stream));
    SendSpec sends[2];
    RecvSpec recvs[2];
    size_t count = 0;
    if (device_comm()) {
        if (above) {
            sends[count] = {rank - 1, first, row};
            recvs[count++] = {rank - 1, top, row};
        }
        if (below) {
            sends[count] = {rank + 1, last, row};
            recvs[count++] = {rank + 1, bottom, row};
        }
        collective([&] { row_comm->send_recv({sends, count}, {recvs, count}); });
        return;
    }
    LR_ASSERT(static_cast<int64_t>(row) <= halo_row_elems * 2, "VAE halo row of ", row, " bytes beyond the staging");
    const size_t cap = static_cast<size_t>(halo_row_elems) * sizeof(uint16_t);
    char* staging = halo_host.data();  // send up, send down, receive from above, receive from below
    if (above) {
        LR_CUDA_CHECK(cudaMemcpyAsync(staging, first, row, cudaMemcpyDeviceToHost, stream));
        sends[count] = {rank - 1, staging, row};
        recvs[count++] = {rank - 1, staging + 2 * cap, row};
    }
    if (below) {
        LR_CUDA_CHECK(cudaMemcpyAsync(staging + cap, last, row, cudaMemcpyDeviceToHost, stream));
        sends[count] = {rank + 1, staging + cap, row};
        recvs[count++] = {rank + 1, staging + 3 * cap, row};
    }
    LR_CUDA_CHECK(cudaStreamSynchronize(stream));
    row_comm->send_recv({sends, count}, {recvs, count});
    if (above) LR_CUDA_CHECK(cudaMemcpyAsync(top, staging + 2 * cap, row, cudaMemcpyHostToDevice, stream));
    if (below) LR_CUDA_CHECK(cudaMemcpyAsync(bottom, staging + 3 * cap, row, cudaMemcpyHostToDevice, stream));
}

// kv_send holds this rank's k rows then its v rows ([2, kv_px, c], level L = the attention's); every rank's block
// is all-gathered into kv_recv ([ranks, 2, kv_px, c]) and its rows copied to their place in the whole frame's k
// and v ([frame pixels, c]).
void CudaVaeStream::State::gather_kv(const LevelDev& L, int64_t c) {
    const int64_t block = 2 * kv_px * c;  // bf16 elements
    const size_t bytes = static_cast<size_t>(block) * sizeof(uint16_t);
    if (device_comm()) {
        collective([&] { row_comm->all_gather(kv_send, kv_recv, bytes); });
    } else {
        char* send = kv_host.data();
        char* recv = send + bytes;
        LR_CUDA_CHECK(cudaMemcpyAsync(send, kv_send, bytes, cudaMemcpyDeviceToHost, stream));
        LR_CUDA_CHECK(cudaStreamSynchronize(stream));
        row_comm->all_gather(send, recv, bytes);
        LR_CUDA_CHECK(
            cudaMemcpyAsync(kv_recv, recv, bytes * static_cast<size_t>(ranks), cudaMemcpyHostToDevice, stream));
    }
    const int shift = attn_level;
    for (int p = 0; p < ranks; ++p) {
        const auto [first, count] = latent_rows[static_cast<size_t>(p)];
        const int64_t px0 = (first << shift) * L.width, px = (count << shift) * L.width;
        const uint16_t* from = kv_recv + p * block;
        const size_t n = static_cast<size_t>(px * c) * sizeof(uint16_t);
        LR_CUDA_CHECK(cudaMemcpyAsync(k + px0 * c, from, n, cudaMemcpyDeviceToDevice, stream));
        LR_CUDA_CHECK(cudaMemcpyAsync(v + px0 * c, from + kv_px * c, n, cudaMemcpyDeviceToDevice, stream));
    }
}

// The rank's rows of the RGB frame (rgb: the head's output rows, f32 [pixels, kHeadOutPad]) converted as the
// whole-frame decode converts them, then sent to rank 0, which assembles the whole frame in host_frame (the
// caller synchronises the stream before reading it).
void CudaVaeStream::State::gather_frame(const LevelDev& L, const float* rgb) {
    const bool planar = format == VaeFrameFormat::kFloatPlanar;
    const int64_t n = L.pixels(), full = L.full_pixels();
    // Rank 0 writes its rows (the frame's first) straight into the whole frame; the others a frame of their rows.
    launch_vae_rgb_out({.rgb = rgb,
                        .pixels = n,
                        .rgb_stride = vae_cuda::kHeadOutPad,
                        .u8 = out_u8,
                        .planar = out_planar,
                        .planar_stride = emits() ? full : n},
                       stream);
    // A frame is `planes` runs of pixels of `px_bytes`: rgb24 one run of 3 bytes a pixel, planar 3 runs of floats.
    const int64_t planes = planar ? 3 : 1;
    const size_t px_bytes = planar ? sizeof(float) : 3;
    char* dev = planar ? reinterpret_cast<char*>(out_planar) : reinterpret_cast<char*>(out_u8);
    const bool direct = device_comm();
    const int shift = static_cast<int>(levels.size()) - 1;
    std::vector<SendSpec> sends;
    std::vector<RecvSpec> recvs;
    if (rank == 0) {
        char* frame = direct ? dev : host_frame.data();
        const size_t plane = static_cast<size_t>(full) * px_bytes;
        for (int p = 1; p < ranks; ++p) {
            const auto [first, count] = latent_rows[static_cast<size_t>(p)];
            const size_t at = static_cast<size_t>((first << shift) * L.width) * px_bytes;
            const size_t bytes = static_cast<size_t>((count << shift) * L.width) * px_bytes;
            for (int64_t j = 0; j < planes; ++j)
                recvs.push_back({p, frame + static_cast<size_t>(j) * plane + at, bytes});
        }
        if (!direct) {
            for (int64_t j = 0; j < planes; ++j) {
                const size_t at = static_cast<size_t>(j) * plane;
                LR_CUDA_CHECK(cudaMemcpyAsync(frame + at, dev + at, static_cast<size_t>(n) * px_bytes,
                                              cudaMemcpyDeviceToHost, stream));
            }
        }
    } else {
        const size_t plane = static_cast<size_t>(n) * px_bytes;
        const char* rows_here = direct ? dev : host_frame.data();
        if (!direct) {
            LR_CUDA_CHECK(cudaMemcpyAsync(host_frame.data(), dev, static_cast<size_t>(planes) * plane,
                                          cudaMemcpyDeviceToHost, stream));
        }
        for (int64_t j = 0; j < planes; ++j) sends.push_back({0, rows_here + static_cast<size_t>(j) * plane, plane});
    }
    if (direct) {
        collective([&] { row_comm->send_recv(sends, recvs); });
        if (rank == 0) {
            LR_CUDA_CHECK(cudaMemcpyAsync(host_frame.data(), dev, frame_bytes(), cudaMemcpyDeviceToHost, stream));
        }
    } else {
        LR_CUDA_CHECK(cudaStreamSynchronize(stream));
        row_comm->send_recv(sends, recvs);
    }
}

#endif  // LONGROLL_HAS_CUDA

}  // namespace lr
