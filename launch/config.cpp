// Loading a config: text format -> protobuf message (with the location of every field) -> overrides ->
// plain structs with defaults -> semantic checks. Every error names its file, line and column, its
// `--set`, or the field whose default was used.
#include "launch/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "launch/config_detail.h"

namespace lr {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::TextFormat;

namespace config_detail {

void FieldOrigins::set_location(const std::string& path, int index, int line, int column) {
    origins_[{path, index}] = Origin{line, column, ""};
}

void FieldOrigins::set_override(const std::string& path, const ConfigOverride& ovr) {
    // The override replaces every element of a repeated field, so none of their file locations apply.
    auto it = origins_.lower_bound({path, std::numeric_limits<int>::min()});
    while (it != origins_.end() && it->first.first == path) it = origins_.erase(it);
    origins_[{path, -1}] = Origin{0, 0, str_cat("--set ", ovr.path, "=", ovr.value)};
}

std::string FieldOrigins::prefix(const std::string& path, int index) const {
    auto it = origins_.find({path, index});
    if (it == origins_.end() && index != -1) it = origins_.find({path, -1});
    if (it != origins_.end()) {
        const Origin& o = it->second;
        if (!o.override_text.empty()) return o.override_text + ": ";
        return str_cat(source_, ":", o.line, ":", o.column, ": ", path, ": ");
    }
    // Not in the file: the value is a default (or was set in code, for validate_config).
    return source_.empty() ? path + ": " : str_cat(source_, ": ", path, ": ");
}

}  // namespace config_detail

namespace {

using config_detail::FieldOrigins;
using config_detail::Issue;
namespace pb = config_detail::pb;

// Schema path of every message type ("longroll.config.Rollout" -> "rollout"), for error messages.
const std::map<std::string, std::string>& message_paths() {
    static const std::map<std::string, std::string> paths = [] {
        std::map<std::string, std::string> out;
        auto walk = [&out](auto& self, const Descriptor& desc, const std::string& path) -> void {
            out[desc.full_name()] = path;
            for (int i = 0; i < desc.field_count(); ++i) {
                const FieldDescriptor& f = *desc.field(i);
                if (f.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
                    self(self, *f.message_type(), path.empty() ? f.name() : path + "." + f.name());
                }
            }
        };
        walk(walk, *pb::Config::descriptor(), "");
        return out;
    }();
    return paths;
}

// Returns the text between the first two quotes after `after` in `msg`, or "".
std::string quoted_after(const std::string& msg, const std::string& after) {
    const size_t at = msg.find(after);
    if (at == std::string::npos) return "";
    const size_t open = msg.find('"', at + after.size());
    if (open == std::string::npos) return "";
    const size_t close = msg.find('"', open + 1);
    return close == std::string::npos ? "" : msg.substr(open + 1, close - open - 1);
}

// Protobuf's message plus what the user needs to fix it: the valid field names or enum values.
std::string explain_parse_error(const std::string& msg) {
    const std::string type = quoted_after(msg, "Message type");
    if (!type.empty() && msg.find("has no field named") != std::string::npos) {
        const Descriptor* desc = pb::Config::descriptor()->file()->pool()->FindMessageTypeByName(type);
        auto path = message_paths().find(type);
        if (desc != nullptr && path != message_paths().end()) {
            const std::string near =
                config_detail::closest_name(quoted_after(msg, "no field named"), config_detail::field_name_list(*desc));
            return str_cat(msg, near.empty() ? "" : str_cat(" Did you mean \"", near, "\"?"), " Valid fields ",
                           path->second.empty() ? "at the top level" : "in " + path->second, ": ",
                           config_detail::field_names(*desc), ".");
        }
    }
    const std::string field = quoted_after(msg, "for field");
    if (msg.find("Unknown enumeration value") != std::string::npos && !field.empty()) {
        for (const auto& [type_name, path] : message_paths()) {
            const Descriptor* desc = pb::Config::descriptor()->file()->pool()->FindMessageTypeByName(type_name);
            const FieldDescriptor* f = desc ? desc->FindFieldByName(field) : nullptr;
            if (f != nullptr && f->enum_type() != nullptr) {
                return str_cat(msg, " Valid values: ", config_detail::enum_value_names(*f->enum_type()), ".");
            }
        }
    }
    // The tokenizer names the token it found; at the end of the text there is none.
    if (msg.ends_with("got: ") || msg.ends_with("found: ")) return msg + "the end of the file (a '}' missing?)";
    return msg;
}

class ParseErrors : public google::protobuf::io::ErrorCollector {
  public:
    ParseErrors(std::string_view name, std::string_view text) : name_(name), text_(text) {}

    void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
        move_to_named_token(message, &line, &column);
        // Protobuf counts lines and columns from 0; editors and compilers from 1.
        const std::string where = line >= 0 ? str_cat(name_, ":", line + 1, ":", column + 1) : name_;
        errors_.push_back(str_cat(where, ": ", explain_parse_error(message)));
    }
    // The parser warns only about schema features this schema does not use (deprecated fields).
    void AddWarning(int /*line*/, google::protobuf::io::ColumnNumber /*column*/,
                    const std::string& /*message*/) override {}

    std::string joined() const {
        std::string out;
        for (const std::string& e : errors_) out += (out.empty() ? "" : "\n") + e;
        return out.empty() ? str_cat(name_, ": not a valid config (protobuf text format)") : out;
    }

  private:
    // Protobuf reports an unknown or repeated field name, or an unknown enum value, at the token after it
    // (which may be on a later line); move (line, column) back to the name, which is what the user must fix.
    void move_to_named_token(const std::string& message, int* line, int* column) const {
        std::string token;
        for (const char* lead : {"has no field named", "Non-repeated field", "Unknown enumeration value of"}) {
            if (message.find(lead) != std::string::npos) token = quoted_after(message, lead);
        }
        if (token.empty() || *line < 0) return;
        size_t offset = 0;  // of the reported position in text_
        for (int i = 0; i < *line; ++i) {
            offset = text_.find('\n', offset);
            if (offset == std::string_view::npos) return;
            ++offset;
        }
        offset = std::min(offset + static_cast<size_t>(*column), text_.size());
        const size_t at = text_.rfind(token, offset);
        if (at == std::string_view::npos) return;
        // Only blanks and comments may separate the name from where protobuf stopped.
        bool in_comment = false;
        for (size_t i = at + token.size(); i < offset; ++i) {
            const char ch = text_[i];
            if (ch == '\n')
                in_comment = false;
            else if (ch == '#')
                in_comment = true;
            else if (!in_comment && !std::isspace(static_cast<unsigned char>(ch)))
                return;
        }
        const size_t line_start = text_.rfind('\n', at);
        *line = static_cast<int>(std::count(text_.begin(), text_.begin() + at, '\n'));
        *column = static_cast<int>(line_start == std::string_view::npos ? at : at - line_start - 1);
    }

    std::string name_;
    std::string_view text_;
    std::vector<std::string> errors_;
};

// Records where the file set each field (1-based), walking the message and the parser's location tree.
void record_locations(const Message& msg, const TextFormat::ParseInfoTree* tree, const std::string& prefix,
                      FieldOrigins* origins) {
    const Reflection& r = *msg.GetReflection();
    std::vector<const FieldDescriptor*> fields;
    r.ListFields(msg, &fields);
    for (const FieldDescriptor* f : fields) {
        const std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
        if (f->is_repeated()) {
            for (int i = 0; i < r.FieldSize(msg, f); ++i) {
                const TextFormat::ParseLocation loc = tree->GetLocation(f, i);
                if (loc.line < 0) continue;
                origins->set_location(path, i, loc.line + 1, loc.column + 1);
                if (i == 0) origins->set_location(path, -1, loc.line + 1, loc.column + 1);
            }
            continue;
        }
        const TextFormat::ParseLocation loc = tree->GetLocation(f, -1);
        if (loc.line >= 0) origins->set_location(path, -1, loc.line + 1, loc.column + 1);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            const TextFormat::ParseInfoTree* nested = tree->GetTreeForNested(f, -1);
            if (nested != nullptr) record_locations(r.GetMessage(msg, f), nested, path, origins);
        }
    }
}

// Reads a whole config file; InputError naming the file when it cannot.
std::string read_config_file(const std::string& path) {
    LR_CHECK(!path.empty(), "config file: expected a path, found an empty one");
    std::error_code ec;
    LR_CHECK(!std::filesystem::is_directory(path, ec), path,
             ": expected a config file (.textproto), found a directory");
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    LR_CHECK(file != nullptr, path, ": cannot open config file: ", std::strerror(errno));
    // A config is a few kilobytes; the cap keeps a wrong path (a checkpoint, /dev/zero) from eating memory.
    constexpr size_t kMaxBytes = 16u << 20;
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0) {
        text.append(buf, n);
        LR_CHECK(text.size() <= kMaxBytes, path, ": expected a config file of at most 16 MiB, found a larger file");
    }
    LR_CHECK(!std::ferror(file.get()), path, ": cannot read config file: ", std::strerror(errno));
    return text;
}

// The embedded copy of configs/tiny.textproto (a unit test checks that they agree).
constexpr std::string_view kTinyConfig = R"pb(
    model {
      dim: 64
      ffn_dim: 128
      num_heads: 2
      num_layers: 2
      in_dim: 16
      out_dim: 16
      text_dim: 64
      text_len: 16
      freq_dim: 256
      eps: 1e-6
      patch_size: [ 1, 2, 2 ]
      model_type: "t2v"
      qk_norm: true
      cross_attn_norm: true
    }
    rollout {
      frames_per_chunk: 3
      denoising_steps: [ 1000, 750, 500, 250 ]
      timestep_shift: 5.0
      context_noise: 0
      local_attn_size: -1
      sink_size: 0
      rope_mode: ABSOLUTE
    }
    video { width: 128 height: 64 fps: 16 }
    attention { policy: DENSE block_size: 64 }
    monitoring { enabled: false }
)pb";

// Protobuf's text format reads 0x10 as 16 and 010 as 8; a config is written by people who mean decimal, so both
// are refused with the place and the value, not silently taken for another number.
void refuse_non_decimal_integers(std::string_view name, const std::string& text) {
    google::protobuf::io::ArrayInputStream in(text.data(), static_cast<int>(text.size()));
    ParseErrors ignored(name, text);  // the parser has reported (and accepted) the text already
    google::protobuf::io::Tokenizer tok(&in, &ignored);
    tok.set_comment_style(google::protobuf::io::Tokenizer::SH_COMMENT_STYLE);
    while (tok.Next()) {
        const auto& t = tok.current();
        if (t.type != google::protobuf::io::Tokenizer::TYPE_INTEGER || t.text.size() < 2 || t.text[0] != '0') continue;
        const bool hex = t.text[1] == 'x' || t.text[1] == 'X';
        LR_FAIL(name, ":", t.line + 1, ":", t.column + 1, ": integer '", t.text, "' is ", hex ? "hexadecimal" : "octal",
                " in protobuf text format; write it in decimal");
    }
}

}  // namespace

Config parse_config_text(std::string_view text, std::string_view name, const std::vector<ConfigOverride>& overrides,
                         const ConfigAdjust& adjust) {
    pb::Config msg;
    TextFormat::ParseInfoTree tree;
    const std::string text_copy(text);
    ParseErrors errors(name, text_copy);
    TextFormat::Parser parser;
    parser.RecordErrorsTo(&errors);
    parser.WriteLocationsTo(&tree);
    if (!parser.ParseFromString(text_copy, &msg)) LR_FAIL(errors.joined());
    refuse_non_decimal_integers(name, text_copy);

    FieldOrigins origins{std::string(name)};
    record_locations(msg, &tree, "", &origins);
    for (const ConfigOverride& ovr : overrides) config_detail::apply_override(ovr, &msg, &origins);

    std::vector<Issue> issues;
    Config cfg = config_detail::config_from_proto(msg, &issues);
    if (adjust) adjust(cfg);
    // A value the struct could not take (a missing required field) already has its message: skip the checks
    // that would complain about the placeholder left in its place.
    const std::vector<Issue> conversion = issues;
    for (Issue& issue : config_detail::find_config_issues(cfg)) {
        bool covered = false;
        for (const Issue& c : conversion) {
            covered |= issue.path == c.path || issue.path.starts_with(c.path + ".");
        }
        if (!covered) issues.push_back(std::move(issue));
    }
    config_detail::throw_if_issues(issues, origins);
    return cfg;
}

Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides, const ConfigAdjust& adjust) {
    return parse_config_text(read_config_file(path), path, overrides, adjust);
}

Config default_config() { return parse_config_text(kTinyConfig, "<built-in tiny config>"); }

std::string config_to_text(const Config& cfg) {
    TextFormat::Printer printer;
    printer.SetUseShortRepeatedPrimitives(true);
    std::string text;
    LR_ASSERT(printer.PrintToString(config_detail::config_to_proto(cfg), &text));
    return "# The effective longroll config: every field, defaults included (schema: launch/longroll_config.proto).\n" +
           text;
}

bool operator==(const Config& a, const Config& b) = default;

std::string_view attention_policy_name(AttentionPolicy policy) {
    switch (policy) {
        case AttentionPolicy::kDense:
            return "DENSE";
        case AttentionPolicy::kSinkWindow:
            return "SINK_WINDOW";
        case AttentionPolicy::kSparseForcing:
            return "SPARSE_FORCING";
        case AttentionPolicy::kLightForcing:
            return "LIGHT_FORCING";
        case AttentionPolicy::kForcingKv:
            return "FORCING_KV";
        case AttentionPolicy::kLvsa:
            return "LVSA";
    }
    config_detail::bad_enum("attention policy", static_cast<int>(policy));
}

std::string_view rope_mode_name(RopeMode mode) {
    switch (mode) {
        case RopeMode::kAbsolute:
            return "ABSOLUTE";
        case RopeMode::kWindowRelative:
            return "WINDOW_RELATIVE";
    }
    config_detail::bad_enum("rope mode", static_cast<int>(mode));
}

std::string_view sampler_name(Sampler sampler) {
    switch (sampler) {
        case Sampler::kSelfForcing:
            return "SELF_FORCING";
        case Sampler::kEuler:
            return "EULER";
    }
    config_detail::bad_enum("sampler", static_cast<int>(sampler));
}

std::string_view transport_name(Transport transport) {
    switch (transport) {
        case Transport::kAuto:
            return "AUTO";
        case Transport::kMpi:
            return "MPI";
        case Transport::kNccl:
            return "NCCL";
    }
    config_detail::bad_enum("transport", static_cast<int>(transport));
}

}  // namespace lr
