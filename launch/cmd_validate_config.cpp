// `longroll validate-config FILE [--set path=value ...] [--print]`: parse + semantic checks. Exit 0 with a
// one-line summary, or exit 2 with file:line:col messages.
#include <cstdio>

#include "launch/cli.h"
#include "launch/cli_args.h"
#include "launch/config.h"
#include "runtime/core/check.h"

namespace lr {
namespace {

const std::vector<FlagSpec> kValidateFlags = {
    {"set", "PATH=VALUE", "override a config field, e.g. rollout.local_attn_size=12", true},
    {"print", "", "print the effective config (defaults and overrides applied) as text format"},
};

}  // namespace

int cmd_validate_config(const std::vector<std::string>& args) {
    const ParsedArgs a = parse_args("validate-config", kValidateFlags, args);
    if (a.has("help")) {
        std::printf("%s", format_help("validate-config", "FILE [--set PATH=VALUE ...] [--print]",
                                      "Parses a config (protobuf text format), applies defaults and overrides, and "
                                      "runs the semantic checks.\nErrors say file:line:col and the field.",
                                      kValidateFlags)
                              .c_str());
        return 0;
    }
    LR_CHECK(a.positional().size() == 1, "longroll validate-config: expected one FILE, found ", a.positional().size(),
             " (see longroll validate-config --help)");
    std::vector<ConfigOverride> overrides;
    for (const auto& s : a.get_all("set")) overrides.push_back(parse_override(s));
    const std::string& path = a.positional()[0];
    const Config cfg = load_config(path, overrides);
    if (a.has("print")) {
        std::fputs(config_to_text(cfg).c_str(), stdout);
    } else {
        std::printf(
            "%s: ok (model dim %lld, %lld layers, %lld heads; %dx%d at %d fps; window %d latent frames; "
            "attention %s; ulysses %d x spatial %d)\n",
            path.c_str(), static_cast<long long>(cfg.model.dim), static_cast<long long>(cfg.model.num_layers),
            static_cast<long long>(cfg.model.num_heads), cfg.video.width, cfg.video.output_height(), cfg.video.fps,
            cfg.rollout.local_attn_size, std::string(attention_policy_name(cfg.attention.policy)).c_str(),
            cfg.parallel.ulysses, cfg.parallel.spatial);
    }
    return 0;
}

}  // namespace lr
