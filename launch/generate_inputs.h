// The inputs of `longroll generate`, opened and checked before any work starts: the DiT (a checkpoint or the
// embedded default), the prompt embeddings (with LongLive prompt switches), and the noise (seeded or replayed).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "launch/config.h"
#include "runtime/core/tensor.h"
#include "runtime/io/safetensors.h"
#include "runtime/model/wan_model.h"
#include "runtime/rollout/noise.h"
#include "runtime/rollout/rollout.h"
#include "runtime/vae/wan_vae.h"

namespace lr {

struct LoadedModel {
    std::optional<WanModel> model;
    std::string description;  // for the start-up summary
    bool embedded = false;    // the embedded default (deterministic random weights)
};

// Which fields of cfg.model the user gave: every one (a --config file), the --set model.FIELD ones, or none (the
// embedded default config).
struct ModelSource {
    bool config_file = false;
    std::vector<std::string> set_fields;  // "dim", "num_heads", ... from --set model.FIELD=...
    bool gave(const std::string& field) const;
};

// Settles cfg.model against the checkpoint `weights_path` (its header: the config in __metadata__["config"], else
// the tensor shapes), before anything depends on the model (parallel layout, sizes, policies): a field the user gave
// that the checkpoint contradicts is refused (InputError naming both values and how to fix it); the others take the
// checkpoint's values (the caller validates cfg after). A head count guessed from the shapes is said on stderr when
// `say`. Runs as the config's ConfigAdjust, so that every model-dependent check of the config sees the checkpoint.
void settle_checkpoint_model(const std::string& weights_path, Config& cfg, const ModelSource& source, bool say);

// `weights_path` empty: the embedded default, refused for models too large for it. A checkpoint's
// __metadata__["config"] overrides cfg.model (which is then re-validated). `weights` false: the model's config
// only, `model` left empty (a dedicated VAE rank needs the shapes, not the weights).
LoadedModel load_model(const std::optional<std::string>& weights_path, Config& cfg, bool weights = true);

WanModelConfig wan_model_config(const ModelConfig& m);

// One prompt of a video: a --prompt-embeds file (tensor `context`) or text for the UMT5 encoder.
struct PromptRef {
    std::string value;  // the file's path, or the text
    bool is_text = false;
    std::string where;  // the flag or file:line it came from, for messages
};

// --switch-prompt FRAME:FILE|TEXT: a latent frame (a multiple of frames_per_chunk, inside the run, increasing) and
// a prompt: a value ending in ".safetensors" is a prompt-embeds file, anything else text.
std::vector<std::pair<int64_t, PromptRef>> parse_prompt_switches(const std::vector<std::string>& switches,
                                                                 const Config& cfg, int64_t latent_frames);

// Every text prompt of the run, encoded in one pass of the UMT5 encoder (cfg.text: the encoder and its tokenizer),
// which is loaded, run and freed here, before the DiT plans its memory. Text -> context F32 [L, text_dim], L the
// prompt's tokens + </s> (Wan keeps those outputs; the DiT zero-pads to text_len). `verbose`: print the truncation
// warnings (rank 0). `gpu` >= 0: encode on that CUDA device (bf16, umt5_encoder_cuda.h); otherwise on the CPU (fp32).
struct EncodedTexts {
    std::map<std::string, HostTensor> contexts;
    std::string description;  // for the start-up summary; empty when no prompt is text
};
// `word_table`: the default model's text.safetensors (runtime/text/word_table.h), used for text prompts when no UMT5
// encoder is configured (cfg.text.encoder empty); empty: none.
EncodedTexts encode_text_prompts(const std::vector<PromptRef>& prompts, const Config& cfg, bool verbose, int gpu = -1,
                                 const std::string& word_table = "");

// Prompt embeddings: each prompt's context as F32 [L, text_dim] (read from its file, or encoded from its text),
// plus the segments the rollout takes. The embedded default prompt is a fixed pseudo-random embedding (the
// random-weight tiny model has no text encoder).
struct Prompts {
    std::vector<HostTensor> contexts;
    std::vector<PromptSegment> segments;
    std::string description;
};

// `main`: --prompt-embeds or --prompt (empty: the embedded default prompt); `switches`: parse_prompt_switches's.
// Text prompts must be in `texts`.
Prompts load_prompts(const std::optional<PromptRef>& main, const std::vector<std::pair<int64_t, PromptRef>>& switches,
                     const Config& cfg, const EncodedTexts& texts);
// Prompt-embeddings files only (profile-heads): `embeds_path` as --prompt-embeds, `switches` FRAME:FILE.safetensors.
Prompts load_prompts(const std::optional<std::string>& embeds_path, const std::vector<std::string>& switches,
                     const Config& cfg, int64_t latent_frames);

struct LoadedVae {
    std::optional<WanVaeDecoder> decoder;  // empty: no video is decoded (latents only)
    std::string description;
};

// The VAE for `--out`: --vae FILE, else the embedded tiny VAE when the DiT is the embedded default too. A real
// DiT without --vae cannot make video (its latents need the real VAE): InputError suggesting --vae or
// --save-latents. `need_video` false (no --out): nothing is loaded, but a given --vae is still checked.
LoadedVae load_vae(const std::optional<std::string>& path, bool model_embedded, bool need_video);

// The rollout's knobs from the config.
RolloutOptions rollout_options(const RolloutConfig& r);
// The attention policy of a run (DESIGN.md section 6) for a model and latent frame: budgets left at -1 (auto)
// resolved for the window, the Forcing-KV head profile read and matched against the model (InputError naming
// the file or field).
BlockPolicyConfig block_policy_config(const Config& cfg, const WanModelConfig& model, int64_t latent_height,
                                      int64_t latent_width, int64_t run_frames);

}  // namespace lr
