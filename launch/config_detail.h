// Internals of longroll_config shared by its .cpp files; the only header that sees protobuf. Not for use
// outside launch/config*.cpp (protobuf is linked PRIVATE).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "launch/config.h"
#include "longroll_config.pb.h"
#include "runtime/core/check.h"

namespace lr::config_detail {

namespace pb = ::longroll::config;

// One semantic problem: the field it is about (schema path, "rollout.local_attn_size"), the element
// for repeated fields (-1 for the whole field) and what was expected and found.
struct Issue {
    std::string path;
    int index = -1;
    std::string message;
};

// Where every field's value came from, so that an error can point there: a line and column of the file,
// a `--set`, or nowhere (the field kept its default).
class FieldOrigins {
  public:
    // `source`: the file name, or "" when there is no file (validate_config alone).
    explicit FieldOrigins(std::string source) : source_(std::move(source)) {}

    // 1-based line and column of field `path` (element `index`, -1 for the field) in the file.
    void set_location(const std::string& path, int index, int line, int column);
    // The field (all its elements) was last set by `--set`.
    void set_override(const std::string& path, const ConfigOverride& ovr);

    // The start of an error line about `path`: "file:3:5: path: ", "--set path=value: ", "file: path: "
    // or "path: ".
    std::string prefix(const std::string& path, int index) const;
    std::string format(const Issue& issue) const { return prefix(issue.path, issue.index) + issue.message; }

  private:
    struct Origin {
        int line = 0;
        int column = 0;
        std::string override_text;  // "--set path=value" when the value came from an override
    };
    std::string source_;
    std::map<std::pair<std::string, int>, Origin> origins_;
};

// An enum class holding a value outside its enumerators: a bug (a cast), never the user's input.
[[noreturn]] inline void bad_enum(const char* type, int value) {
    detail::throw_internal_error(__FILE__, __LINE__, "known enum value", str_cat(type, " ", value));
}

// --- config_proto.cpp: schema <-> structs ---

// The struct for a parsed message: explicit defaults for absent fields. Values that the struct cannot
// hold (a patch_size of 2 values, an unknown enum number) and absent required fields become issues.
Config config_from_proto(const pb::Config& msg, std::vector<Issue>* issues);
// Every field set, so that the text lists the effective value of each.
pb::Config config_to_proto(const Config& cfg);

// --- config_override.cpp ---

// Sets the field `ovr.path` names through reflection; InputError "--set path=value: ..." for an unknown
// path or a value of the wrong type.
void apply_override(const ConfigOverride& ovr, pb::Config* root, FieldOrigins* origins);

// The names of the fields of `desc`, in schema order.
std::vector<std::string> field_name_list(const google::protobuf::Descriptor& desc);
// The same, ", "-separated, for messages that list the valid choices.
std::string field_names(const google::protobuf::Descriptor& desc);
// The names of the values of `desc`.
std::string enum_value_names(const google::protobuf::EnumDescriptor& desc);
// The candidate nearest to `name` by edit distance when it is close enough to be a typo, else "".
std::string closest_name(std::string_view name, const std::vector<std::string>& candidates);

// --- config_validate.cpp ---

// Every semantic problem of `cfg`, in schema order; empty when the config is usable.
std::vector<Issue> find_config_issues(const Config& cfg);

// Throws one InputError listing `issues` (one per line) when there are any.
void throw_if_issues(const std::vector<Issue>& issues, const FieldOrigins& origins);

}  // namespace lr::config_detail
