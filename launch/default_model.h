// The embedded default model (DESIGN.md section 1): the tiny Wan2.1 DiT trained here on procedurally generated video
// (models/tiny-shapes/, made by tools/train/), which `longroll generate` runs when given neither --config nor
// --weights. Its files live next to the source tree (the path is recorded at build time) or, installed, under
// ../share/longroll/models/ beside the binary.
//
// LONGROLL_DEFAULT_MODEL selects it explicitly: a model directory, or "random" for the deterministic random-weight
// tiny model of configs/tiny.textproto (the engine's own tests, which need its small fixed shapes); unset, the
// shipped model when it is found, else the random-weight model.
#pragma once

#include <optional>
#include <string>

#include "launch/config.h"
#include "launch/generate_inputs.h"

namespace lr {

struct DefaultModel {
    std::string dir;     // models/tiny-shapes
    std::string config;  // tiny-shapes.textproto: frame size, denoising steps, KV window
    std::string dit;     // dit.safetensors (config in its metadata)
    std::string vae;     // vae.safetensors: the VAE decoder, latent mean / std in its metadata
    std::string prompt;  // prompt.safetensors: `context` of the default caption
    std::string text;    // text.safetensors: the word table `--prompt TEXT` uses (runtime/text/word_table.h); optional
};

// The shipped model's files, or nullopt for the random-weight model (LONGROLL_DEFAULT_MODEL=random, or nothing
// shipped found). InputError when LONGROLL_DEFAULT_MODEL names a directory that lacks one of the files.
std::optional<DefaultModel> find_default_model();

// load_model on the shipped DiT, marked as the embedded default (so that no --vae and no --prompt-embeds are
// needed), with a description naming the model card.
LoadedModel load_default_model(const DefaultModel& m, Config& cfg, bool weights);

}  // namespace lr
