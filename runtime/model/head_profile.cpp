#include "runtime/model/head_profile.h"

#include <cmath>
#include <sstream>

#include "runtime/core/check.h"
#include "runtime/io/file_io.h"
#include "runtime/io/json.h"

namespace lr {

namespace {
constexpr const char* kFormat = "longroll.head_profile.v1";
}

std::string wan_model_signature(const WanModelConfig& cfg) {
    return str_cat("dim=", cfg.dims.dim, " ffn_dim=", cfg.dims.ffn_dim, " num_heads=", cfg.dims.num_heads,
                   " num_layers=", cfg.dims.num_layers);
}

HeadProfile read_head_profile(const std::string& path) {
    const std::string text = io::read_input_file(path, uint64_t{16} << 20, "head profile (JSON)");
    const json::Value doc = json::parse(text, path);
    LR_CHECK(doc.is_object(), path, ": expected a JSON object (a head profile from longroll profile-heads)");
    const auto field = [&](const char* name) -> const json::Value& {
        const json::Value* v = doc.find(name);
        LR_CHECK(v != nullptr, path, ": field '", name,
                 "' is missing (not a head profile from longroll profile-heads?)");
        return *v;
    };
    LR_CHECK(field("format").is_string() && field("format").as_string() == kFormat, path, ": field 'format' is not \"",
             kFormat, "\"");
    HeadProfile p;
    LR_CHECK(field("model").is_string(), path, ": field 'model' must be a string");
    p.model_signature = field("model").as_string();
    p.recent_frames = field("recent_frames").as_int64();
    p.skip_frames = field("skip_frames").as_int64();
    p.forwards = field("forwards").as_int64();
    LR_CHECK(p.recent_frames >= 1 && p.skip_frames >= 0 && p.forwards >= 1, path,
             ": recent_frames >= 1, skip_frames >= 0 and forwards >= 1 expected, found ", p.recent_frames, ", ",
             p.skip_frames, ", ", p.forwards);
    const json::Value& share = field("share");
    LR_CHECK(share.is_array() && !share.as_array().empty(), path,
             ": field 'share' must be a non-empty array of layers");
    p.num_layers = static_cast<int64_t>(share.as_array().size());
    for (size_t l = 0; l < share.as_array().size(); ++l) {
        const json::Value& row = share.as_array()[l];
        LR_CHECK(row.is_array() && !row.as_array().empty(), path, ": share[", l,
                 "] must be a non-empty array of heads");
        if (l == 0) p.num_heads = static_cast<int64_t>(row.as_array().size());
        LR_CHECK(static_cast<int64_t>(row.as_array().size()) == p.num_heads, path, ": share[", l, "] has ",
                 row.as_array().size(), " heads, share[0] has ", p.num_heads);
        for (size_t h = 0; h < row.as_array().size(); ++h) {
            const json::Value& v = row.as_array()[h];
            LR_CHECK(v.is_number(), path, ": share[", l, "][", h, "] must be a number");
            const double x = v.as_number();
            LR_CHECK(std::isfinite(x) && x >= 0 && x <= 1, path, ": share[", l, "][", h, "] = ", x,
                     " is not a share in [0, 1]");
            p.share.push_back(x);
        }
    }
    return p;
}

std::string head_profile_json(const HeadProfile& p) {
    std::ostringstream os;
    os.precision(9);
    os << "{\n  \"format\": \"" << kFormat << "\",\n  \"model\": " << json::quote(p.model_signature)
       << ",\n  \"recent_frames\": " << p.recent_frames << ",\n  \"skip_frames\": " << p.skip_frames
       << ",\n  \"forwards\": " << p.forwards << ",\n  \"share\": [";
    for (int64_t l = 0; l < p.num_layers; ++l) {
        os << (l ? ",\n    [" : "\n    [");
        for (int64_t h = 0; h < p.num_heads; ++h)
            os << (h ? ", " : "") << p.share[static_cast<size_t>(l * p.num_heads + h)];
        os << "]";
    }
    os << "\n  ]\n}\n";
    return os.str();
}

std::vector<uint8_t> static_heads(const HeadProfile& p, const WanModelConfig& cfg, double threshold,
                                  const std::string& path) {
    LR_CHECK(p.model_signature == wan_model_signature(cfg) && p.num_layers == cfg.dims.num_layers &&
                 p.num_heads == cfg.dims.num_heads,
             path, ": the head profile is for the model \"", p.model_signature, "\" (", p.num_layers, " layers x ",
             p.num_heads, " heads); this run's model is \"", wan_model_signature(cfg),
             "\": profile it with longroll profile-heads");
    std::vector<uint8_t> s(p.share.size());
    for (size_t i = 0; i < s.size(); ++i) s[i] = p.share[i] >= threshold ? 1 : 0;
    return s;
}

}  // namespace lr
