#include "launch/cli_args.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "runtime/core/check.h"

namespace lr {

bool ParsedArgs::has(std::string_view flag) const { return values_.find(flag) != values_.end(); }

std::optional<std::string> ParsedArgs::get(std::string_view flag) const {
    const auto it = values_.find(flag);
    if (it == values_.end() || it->second.empty()) return std::nullopt;
    return it->second.back();
}

std::vector<std::string> ParsedArgs::get_all(std::string_view flag) const {
    const auto it = values_.find(flag);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<int64_t> ParsedArgs::get_int(std::string_view flag, int64_t min, int64_t max) const {
    const auto v = get(flag);
    if (!v) return std::nullopt;
    int64_t x = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
    LR_CHECK(ec == std::errc() && end == v->data() + v->size(), "--", flag, ": expected an integer, found '", *v, "'");
    LR_CHECK(x >= min && x <= max, "--", flag, ": ", x, " is out of range [", min, ", ", max, "]");
    return x;
}

std::optional<double> ParsedArgs::get_double(std::string_view flag, double min, double max) const {
    const auto v = get(flag);
    if (!v) return std::nullopt;
    char* end = nullptr;
    const double x = std::strtod(v->c_str(), &end);
    LR_CHECK(!v->empty() && end == v->c_str() + v->size() && std::isfinite(x), "--", flag,
             ": expected a number, found '", *v, "'");
    LR_CHECK(x >= min && x <= max, "--", flag, ": ", x, " is out of range [", min, ", ", max, "]");
    return x;
}

ParsedArgs parse_args(std::string_view command, const std::vector<FlagSpec>& specs,
                      const std::vector<std::string>& args) {
    ParsedArgs out;
    auto find_spec = [&](std::string_view name) -> const FlagSpec* {
        for (const auto& s : specs) {
            if (s.name == name) return &s;
        }
        return nullptr;
    };
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "-h" || a == "--help") {
            out.values_["help"].emplace_back();
            continue;
        }
        if (a.rfind("--", 0) != 0 || a == "--") {
            LR_CHECK(a.empty() || a[0] != '-' || a == "-", "longroll ", command, ": unknown option '", a,
                     "' (see longroll ", command, " --help)");
            out.positional_.push_back(a);
            continue;
        }
        std::string name = a.substr(2);
        std::optional<std::string> value;
        if (const size_t eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
        }
        const FlagSpec* spec = find_spec(name);
        LR_CHECK(spec != nullptr, "longroll ", command, ": unknown flag '--", name, "' (see longroll ", command,
                 " --help)");
        if (spec->value_name.empty()) {
            LR_CHECK(!value, "longroll ", command, ": --", name, " takes no value");
            value = std::string();
        } else if (!value) {
            LR_CHECK(i + 1 < args.size(), "longroll ", command, ": --", name, " needs a value (", spec->value_name,
                     ")");
            value = args[++i];
        }
        auto& slot = out.values_[name];
        LR_CHECK(spec->repeatable || slot.empty(), "longroll ", command, ": --", name, " given more than once");
        slot.push_back(*value);
    }
    return out;
}

std::string format_help(std::string_view command, std::string_view usage, std::string_view summary,
                        const std::vector<FlagSpec>& specs) {
    std::string out = str_cat("Usage: longroll ", command, " ", usage, "\n\n", summary, "\n");
    if (specs.empty()) return out;
    out += "\nFlags:\n";
    size_t width = 0;
    std::vector<std::string> heads;
    for (const auto& s : specs) {
        heads.push_back(str_cat("--", s.name, s.value_name.empty() ? "" : " ", s.value_name));
        width = std::max(width, heads.back().size());
    }
    for (size_t i = 0; i < specs.size(); ++i) {
        out += str_cat("  ", heads[i], std::string(width - heads[i].size() + 2, ' '), specs[i].help,
                       specs[i].repeatable ? " (repeatable)" : "", "\n");
    }
    out += str_cat("  --help", std::string(width > 6 ? width - 6 + 2 : 2, ' '), "show this help\n");
    return out;
}

}  // namespace lr
