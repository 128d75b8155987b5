// `longroll inspect FILE`: names, dtypes, shapes and bytes of a safetensors file or sharded index. Opening
// validates the whole header, so this is also the quickest check of a downloaded or converted checkpoint.
#include <cstdio>

#include "launch/cli.h"
#include "launch/cli_args.h"
#include "runtime/core/check.h"
#include "runtime/io/json.h"
#include "runtime/io/safetensors.h"
#include "runtime/text/umt5_weights.h"

namespace lr {
namespace {

const std::vector<FlagSpec> kInspectFlags = {
    {"json", "", "print one JSON object instead of a table"},
};

std::string shape_json(const Shape& s) {
    std::string out = "[";
    for (int i = 0; i < s.ndim; ++i) out += str_cat(i ? "," : "", s[i]);
    return out + "]";
}

// What the file is, when the engine recognises it from its tensor names: for now the UMT5 text encoder.
std::string model_summary(const SafetensorsCheckpoint& ckpt, bool as_json) {
    const std::optional<Umt5Detection> d = detect_umt5(ckpt);
    if (!d) return {};
    const Umt5Config& c = d->config;
    if (as_json) {
        return str_cat(",\"model\":{\"type\":\"umt5_encoder\",\"naming\":",
                       json::quote(d->naming == Umt5Naming::kWan ? "wan" : "huggingface"),
                       ",\"vocab_size\":", c.vocab_size, ",\"d_model\":", c.d_model, ",\"num_heads\":", c.num_heads,
                       ",\"d_kv\":", c.d_kv, ",\"d_ff\":", c.d_ff, ",\"num_layers\":", c.num_layers,
                       ",\"num_buckets\":", c.num_buckets, ",\"max_distance\":", c.max_distance, "}");
    }
    return str_cat("model: UMT5 text encoder, ", umt5_naming_name(d->naming), " names: vocab ", c.vocab_size,
                   ", d_model ", c.d_model, ", ", c.num_layers, " layers, ", c.num_heads, " heads of ", c.d_kv,
                   ", d_ff ", c.d_ff, ", ", c.num_buckets, " position buckets per layer (max distance ", c.max_distance,
                   "), ", c.parameter_count() / 1000000, "M parameters\n");
}

}  // namespace

int cmd_inspect(const std::vector<std::string>& args) {
    const ParsedArgs a = parse_args("inspect", kInspectFlags, args);
    if (a.has("help")) {
        std::printf("%s", format_help("inspect", "FILE.safetensors | FILE.safetensors.index.json",
                                      "Validates a checkpoint completely and lists its tensors.", kInspectFlags)
                              .c_str());
        return 0;
    }
    LR_CHECK(a.positional().size() == 1, "longroll inspect: expected one FILE, found ", a.positional().size(),
             " (see longroll inspect --help)");
    const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(a.positional()[0]);
    const std::vector<std::string> names = ckpt.names();

    if (a.has("json")) {
        std::string out = str_cat("{\"file\":", json::quote(ckpt.path()), ",\"tensors\":[");
        for (size_t i = 0; i < names.size(); ++i) {
            const SafetensorsEntry* e = ckpt.find(names[i]);
            out += str_cat(i ? "," : "", "{\"name\":", json::quote(e->name), ",\"dtype\":\"", dtype_name(e->dtype),
                           "\",\"shape\":", shape_json(e->shape), ",\"bytes\":", e->end - e->begin,
                           ",\"file\":", json::quote(ckpt.file_of(e->name)), "}");
        }
        out += "],\"metadata\":{";
        bool first = true;
        for (const auto& [k, v] : ckpt.metadata()) {
            out += str_cat(first ? "" : ",", json::quote(k), ":", json::quote(v));
            first = false;
        }
        out += str_cat("}", model_summary(ckpt, true), ",\"total_bytes\":", ckpt.total_bytes(), "}\n");
        std::fputs(out.c_str(), stdout);
        return 0;
    }

    std::printf("%s: %zu tensors, %s\n", ckpt.path().c_str(), names.size(), format_bytes(ckpt.total_bytes()).c_str());
    std::fputs(model_summary(ckpt, false).c_str(), stdout);
    for (const auto& [k, v] : ckpt.metadata()) {
        constexpr size_t kMaxShown = 400;
        std::printf("metadata %s = %s%s\n", k.c_str(), v.substr(0, kMaxShown).c_str(),
                    v.size() > kMaxShown ? " ..." : "");
    }
    size_t width = 4;
    for (const auto& n : names) width = std::max(width, n.size());
    std::printf("%-*s  %-7s  %-24s  %s\n", static_cast<int>(width), "name", "dtype", "shape", "bytes");
    for (const auto& n : names) {
        const SafetensorsEntry* e = ckpt.find(n);
        std::printf("%-*s  %-7s  %-24s  %llu\n", static_cast<int>(width), n.c_str(),
                    std::string(dtype_name(e->dtype)).c_str(), e->shape.str().c_str(),
                    static_cast<unsigned long long>(e->end - e->begin));
    }
    return 0;
}

}  // namespace lr
