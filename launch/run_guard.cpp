#include "launch/run_guard.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "runtime/core/check.h"
#include "runtime/io/safetensors.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

// The file's identity for comparisons: canonical path (links resolved, also for a file that does not exist yet).
std::string identity(const std::string& path) {
    std::error_code ec;
    const fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
    return ec ? fs::absolute(path).lexically_normal().string() : p.string();
}

bool same_file(const std::string& a, const std::string& b) {
    if (identity(a) == identity(b)) return true;
    std::error_code ec;
    return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec) && !ec;  // hard links
}

void check_location(const NamedPath& o) {
    LR_CHECK(!o.path.empty(), o.flag, ": the path is empty");
    const fs::path p(o.path);
    LR_CHECK(!p.filename().empty() && p.filename() != "." && p.filename() != "..", o.flag, " ", o.path,
             ": the path names a directory, not a file");
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    std::error_code ec;
    const fs::file_status st = fs::status(dir, ec);
    LR_CHECK(fs::exists(st), o.flag, " ", o.path, ": directory '", dir, "' does not exist");
    LR_CHECK(fs::is_directory(st), o.flag, " ", o.path, ": '", dir, "' is not a directory");
    LR_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, o.flag, " ", o.path, ": directory '", dir, "' is not writable (",
             std::strerror(errno), ")");
    LR_CHECK(!fs::is_directory(fs::status(p, ec)), o.flag, " ", o.path, ": it is an existing directory");
}

}  // namespace

void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs, bool overwrite,
                   const std::vector<std::string>& may_exist) {
    for (size_t i = 0; i < outputs.size(); ++i) {
        const NamedPath& o = outputs[i];
        for (const NamedPath& in : inputs) {
            LR_CHECK(in.path.empty() || !same_file(o.path, in.path), o.flag, " ", o.path, " is the run's input ",
                     in.flag, " ", in.path, ": an output never replaces an input (choose another name)");
        }
        for (size_t j = 0; j < i; ++j) {
            LR_CHECK(!same_file(o.path, outputs[j].path), o.flag, " ", o.path, " is also ", outputs[j].flag,
                     ": two outputs cannot share one file");
        }
        check_location(o);
        bool allowed = overwrite;
        for (const std::string& m : may_exist) allowed |= same_file(m, o.path);
        std::error_code ec;
        LR_CHECK(allowed || !fs::exists(fs::symlink_status(o.path, ec)), o.flag, " ", o.path,
                 ": the file exists; add --overwrite to replace it, or choose another name");
    }
}

std::vector<OutputLock> lock_outputs(const std::vector<NamedPath>& outputs) {
    std::vector<OutputLock> locks;
    for (const NamedPath& o : outputs) {
        locks.emplace_back(o.path, o.flag);
        remove_stale_temporaries(o.path);
    }
    return locks;
}

std::string checkpoint_path_for(const std::string& primary) { return primary + ".resume.safetensors"; }

std::string digest_hex(const void* data, size_t bytes, uint64_t seed) {
    uint64_t h = seed;
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    char out[17];
    std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
    return out;
}

namespace {

// One file: its size, its first MiB (a safetensors header names every tensor, shape and offset), 64 KiB every
// 64 MiB after that, and its last MiB. A re-export, a fine-tune of the same shapes or another file changes it;
// reading ~2 MiB per GiB keeps a 28 GB checkpoint's fingerprint well under a second.
std::string one_file_fingerprint(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    LR_CHECK(f.good(), path, ": cannot open it");
    f.seekg(0, std::ios::end);
    const auto size = static_cast<uint64_t>(f.tellg());
    constexpr uint64_t kHead = 1 << 20, kStride = 64ull << 20, kSample = 64 << 10;
    std::string bytes = std::to_string(size) + ":";
    const auto take = [&](uint64_t at, uint64_t n) {
        n = std::min(n, size - std::min(at, size));
        std::string buf(static_cast<size_t>(n), '\0');
        f.seekg(static_cast<std::streamoff>(at));
        f.read(buf.data(), static_cast<std::streamsize>(n));
        bytes += buf;
    };
    take(0, kHead);
    for (uint64_t at = kStride; at + kSample < size; at += kStride) take(at, kSample);
    if (size > kHead) take(size - std::min(size - kHead, kHead), kHead);
    return digest_hex(bytes.data(), bytes.size());
}

}  // namespace

std::string file_fingerprint(const std::string& path) {
    std::string fp = one_file_fingerprint(path);
    // A sharded checkpoint's index names its shards: each one counts (two fine-tunes share one index).
    if (path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
        try {
            const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(path);
            std::set<std::string> shards;
            for (const std::string& name : ckpt.names()) shards.insert(ckpt.file_of(name));
            for (const std::string& shard : shards) fp += "+" + one_file_fingerprint(shard);
        } catch (const InputError&) {
            // Not an index: the file alone (loading it says what is wrong).
        }
    }
    return fp;
}

void write_run_checkpoint(const std::string& path, const RunFingerprint& fp, int64_t chunks_done,
                          const TensorView& latents_done) {
    write_safetensors(path, {{"latents", latents_done}},
                      {{"longroll_checkpoint", "1"},
                       {"chunks_done", std::to_string(chunks_done)},
                       {"latent_frames", std::to_string(fp.latent_frames)},
                       {"config_hash", fp.config},
                       {"weights_hash", fp.weights},
                       {"prompts_hash", fp.prompts},
                       {"noise_hash", fp.noise}});
}

RunCheckpoint read_run_checkpoint(const std::string& path, const RunFingerprint& expected, int64_t channels,
                                  int64_t height, int64_t width, int64_t frames_per_chunk) {
    const std::string where = str_cat("--resume: checkpoint ", path);
    LR_CHECK(fs::exists(path), "--resume: no checkpoint '", path,
             "' (a run writes it every output.checkpoint_every chunks and when stopped by a signal); run without "
             "--resume to start over");
    const SafetensorsFile f = SafetensorsFile::open(path);
    std::map<std::string, std::string> meta(f.metadata().begin(), f.metadata().end());
    LR_CHECK(meta["longroll_checkpoint"] == "1", where, ": not a longroll resume checkpoint");
    const auto differs = [&](const char* key, const std::string& want, const char* what) {
        LR_CHECK(meta[key] == want, where, ": the ", what,
                 " differ from the interrupted run's; resume with the same flags and files, or start over with "
                 "--overwrite");
    };
    differs("config_hash", expected.config, "config (file, --set and flags)");
    differs("weights_hash", expected.weights, "weights (--weights, --vae)");
    differs("prompts_hash", expected.prompts, "prompts (--prompt, --prompt-embeds, --switch-prompt)");
    differs("noise_hash", expected.noise, "noise (--seed, --noise)");
    LR_CHECK(meta["latent_frames"] == std::to_string(expected.latent_frames), where, ": the interrupted run made ",
             meta["latent_frames"], " latent frames, this one ", expected.latent_frames,
             " (--seconds, --latent-frames): resume with the same length");
    RunCheckpoint c;
    char* end = nullptr;
    c.chunks_done = std::strtoll(meta["chunks_done"].c_str(), &end, 10);
    const SafetensorsEntry* e = f.find("latents");
    LR_CHECK(e != nullptr, where, ": no tensor 'latents'");
    const TensorView v = f.view(*e);
    LR_CHECK(v.dtype == DType::kF32 && v.ndim() == 4 && v.shape[1] == channels && v.shape[2] == height &&
                 v.shape[3] == width,
             where, ": tensor 'latents' is ", v.str(), ", expected F32 [T, ", channels, ", ", height, ", ", width, "]");
    c.frames_done = v.shape[0];
    LR_CHECK(c.chunks_done > 0 && c.frames_done == std::min(c.chunks_done * frames_per_chunk, expected.latent_frames),
             where, ": ", c.chunks_done, " chunks done but ", c.frames_done, " latent frames saved");
    c.latents = HostTensor(DType::kF32, v.shape);
    std::memcpy(c.latents.view.data, v.data, static_cast<size_t>(v.nbytes()));
    return c;
}

}  // namespace lr
