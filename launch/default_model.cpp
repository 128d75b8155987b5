#include "launch/default_model.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "runtime/core/check.h"

namespace lr {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModelName = "tiny-shapes";

DefaultModel files_in(const fs::path& dir) {
    DefaultModel m;
    m.dir = dir.string();
    m.config = (dir / "tiny-shapes.textproto").string();
    m.dit = (dir / "dit.safetensors").string();
    m.vae = (dir / "vae.safetensors").string();
    m.prompt = (dir / "prompt.safetensors").string();
    std::error_code ec;
    if (fs::is_regular_file(dir / "text.safetensors", ec)) m.text = (dir / "text.safetensors").string();
    return m;
}

bool complete(const DefaultModel& m) {
    std::error_code ec;
    for (const std::string& f : {m.config, m.dit, m.vae, m.prompt}) {
        if (!fs::is_regular_file(f, ec)) return false;
    }
    return true;
}

// Where a shipped model may be: the source tree this binary was built from, then an install layout beside it.
std::vector<fs::path> candidate_dirs() {
    std::vector<fs::path> dirs;
#ifdef LONGROLL_SOURCE_MODELS_DIR
    dirs.emplace_back(fs::path(LONGROLL_SOURCE_MODELS_DIR) / kModelName);
#endif
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) dirs.push_back(exe.parent_path().parent_path() / "share" / "longroll" / "models" / kModelName);
    return dirs;
}

}  // namespace

std::optional<DefaultModel> find_default_model() {
    if (const char* env = std::getenv("LONGROLL_DEFAULT_MODEL"); env != nullptr && *env != '\0') {
        const std::string v(env);
        if (v == "random") return std::nullopt;
        DefaultModel m = files_in(v);
        LR_CHECK(complete(m), "LONGROLL_DEFAULT_MODEL=", v,
                 ": expected a model directory holding tiny-shapes.textproto, ",
                 "dit.safetensors, vae.safetensors and prompt.safetensors (tools/train/train.py export writes one), or "
                 "'random' for the random-weight test model");
        return m;
    }
    for (const fs::path& dir : candidate_dirs()) {
        DefaultModel m = files_in(dir);
        if (complete(m)) return m;
    }
    return std::nullopt;
}

LoadedModel load_default_model(const DefaultModel& m, Config& cfg, bool weights) {
    LoadedModel out = load_model(m.dit, cfg, weights);
    out.embedded = true;
    out.description = str_cat("embedded default model ", m.dir,
                              " (a tiny Wan2.1 DiT made by tools/train/ on procedurally generated video; model card: "
                              "README.md there)");
    return out;
}

}  // namespace lr
