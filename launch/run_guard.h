// What makes a long `generate` run safe to stop and to repeat (DESIGN.md section 9):
//   - output checks before any work: no output may name an input or another output, an existing output is
//     refused unless --overwrite (or it is the interrupted run's own, with --resume), every output directory is
//     writable, and a lock per output keeps two runs from writing one file;
//   - the resume checkpoint: the clean latents of every finished chunk (the rollout replays their clean passes to
//     rebuild the KV cache exactly, and the VAE decodes them again to rebuild the video), the number of chunks
//     done, and fingerprints of the config, weights, prompts and noise that a resume must match.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/output_file.h"
#include "runtime/core/tensor.h"

namespace lr {

// A file on the command line and the flag that named it, for messages.
struct NamedPath {
    std::string path;
    std::string flag;
};

// Refuses (InputError, exit code 2, naming the flags): an output equal to an input or to another output (the same
// file, also through links; never allowed, not even with --overwrite), an output whose directory is missing, not a
// directory or not writable, an output that is an existing directory, and an existing output unless `overwrite`
// or it is listed in `may_exist` (an interrupted run's outputs, with --resume).
void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs, bool overwrite,
                   const std::vector<std::string>& may_exist = {});

// Locks every output (OutputLock) and removes the temporaries killed runs left next to them.
std::vector<OutputLock> lock_outputs(const std::vector<NamedPath>& outputs);

// "<primary>.resume.safetensors": the checkpoint of the run writing `primary` (--out, else --save-latents).
std::string checkpoint_path_for(const std::string& primary);

// What a resumed run must share with the interrupted one; each field is a hex digest or a count.
struct RunFingerprint {
    std::string config;   // the effective config, minus fields that do not change the result (monitoring, checkpoints)
    std::string weights;  // DiT and VAE files: size, header and sampled bytes; or the embedded model's name
    std::string prompts;  // every prompt's embeddings and switch frames
    std::string noise;    // the seed, or the --noise file
    int64_t latent_frames = 0;
};

// A stable 64-bit digest (FNV-1a) as 16 hex digits.
std::string digest_hex(const void* data, size_t bytes, uint64_t seed = 0xcbf29ce484222325ull);
// A file's size, first and last MiB and 64 KiB every 64 MiB (a sharded index: each shard too): cheap for a many-GiB
// checkpoint, and a re-export, a fine-tune of the same shapes or another file changes it.
std::string file_fingerprint(const std::string& path);

struct RunCheckpoint {
    int64_t chunks_done = 0;
    int64_t frames_done = 0;  // latent frames
    HostTensor latents;       // [frames_done, C, H, W] F32
};

// Writes the checkpoint atomically (a unique temporary file renamed over `path`). RuntimeError on I/O failure.
void write_run_checkpoint(const std::string& path, const RunFingerprint& fp, int64_t chunks_done,
                          const TensorView& latents_done);

// Reads a checkpoint and checks it against this run: InputError (exit code 2) naming what differs (config,
// weights, prompts, noise, length) or what is wrong with the file.
RunCheckpoint read_run_checkpoint(const std::string& path, const RunFingerprint& expected, int64_t channels,
                                  int64_t height, int64_t width, int64_t frames_per_chunk);

}  // namespace lr
