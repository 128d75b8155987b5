// `--set path=value`: the path names a field of the schema through protobuf reflection, so every field a
// file can set can be overridden, with no list to keep in sync.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "launch/config_detail.h"

namespace lr {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::string upper_snake(std::string_view s) {
    std::string out(s);
    for (char& ch : out) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return out;
}

const char* type_label(const FieldDescriptor& f) {
    switch (f.cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
            return "an integer (int32)";
        case FieldDescriptor::CPPTYPE_INT64:
            return "an integer (int64)";
        case FieldDescriptor::CPPTYPE_UINT32:
            return "a non-negative integer (uint32)";
        case FieldDescriptor::CPPTYPE_UINT64:
            return "a non-negative integer (uint64)";
        case FieldDescriptor::CPPTYPE_DOUBLE:
        case FieldDescriptor::CPPTYPE_FLOAT:
            return "a finite number";
        case FieldDescriptor::CPPTYPE_BOOL:
            return "a boolean (true or false)";
        case FieldDescriptor::CPPTYPE_ENUM:
            return "one of";
        case FieldDescriptor::CPPTYPE_STRING:
            return "a string";
        case FieldDescriptor::CPPTYPE_MESSAGE:
            return "a message";
    }
    return "a value";
}

// Parses a whole token as an integer of type T; false on junk or out of range.
template <typename T>
bool parse_integer(std::string_view s, T* out) {
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, *out);
    return !s.empty() && ec == std::errc() && ptr == end;
}

bool parse_double(std::string_view s, double* out) {
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, *out);
    return !s.empty() && ec == std::errc() && ptr == end && std::isfinite(*out);
}

bool parse_bool(std::string_view s, bool* out) {
    const std::string u = upper_snake(s);
    if (u == "TRUE" || u == "1" || u == "YES" || u == "ON") {
        *out = true;
        return true;
    }
    if (u == "FALSE" || u == "0" || u == "NO" || u == "OFF") {
        *out = false;
        return true;
    }
    return false;
}

// Enum values by name, ignoring case and accepting '-' for '_' ("sink-window").
const EnumValueDescriptor* find_enum_value(const EnumDescriptor& e, std::string_view s) {
    const std::string u = upper_snake(s);
    for (int i = 0; i < e.value_count(); ++i) {
        if (e.value(i)->name() == u) return e.value(i);
    }
    return nullptr;
}

// Sets one value (element `repeated` times appended, or the singular field) of `field` in `msg`.
void set_value(const FieldDescriptor& field, std::string_view text, Message* msg, const std::string& where) {
    const Reflection& r = *msg->GetReflection();
    const bool rep = field.is_repeated();
    auto bad = [&]() {
        if (field.cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
            LR_FAIL(where, ": expected one of ", config_detail::enum_value_names(*field.enum_type()), ", found '", text,
                    "'");
        }
        LR_FAIL(where, ": expected ", type_label(field), rep ? " per element" : "", ", found '", text, "'");
    };
    switch (field.cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32: {
            int32_t v;
            if (!parse_integer(text, &v)) bad();
            rep ? r.AddInt32(msg, &field, v) : r.SetInt32(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_INT64: {
            int64_t v;
            if (!parse_integer(text, &v)) bad();
            rep ? r.AddInt64(msg, &field, v) : r.SetInt64(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_UINT32: {
            uint32_t v;
            if (!parse_integer(text, &v)) bad();
            rep ? r.AddUInt32(msg, &field, v) : r.SetUInt32(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_UINT64: {
            uint64_t v;
            if (!parse_integer(text, &v)) bad();
            rep ? r.AddUInt64(msg, &field, v) : r.SetUInt64(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_DOUBLE: {
            double v;
            if (!parse_double(text, &v)) bad();
            rep ? r.AddDouble(msg, &field, v) : r.SetDouble(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_FLOAT: {
            double v;
            if (!parse_double(text, &v)) bad();
            rep ? r.AddFloat(msg, &field, static_cast<float>(v)) : r.SetFloat(msg, &field, static_cast<float>(v));
            break;
        }
        case FieldDescriptor::CPPTYPE_BOOL: {
            bool v;
            if (!parse_bool(text, &v)) bad();
            rep ? r.AddBool(msg, &field, v) : r.SetBool(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_ENUM: {
            const EnumValueDescriptor* v = find_enum_value(*field.enum_type(), text);
            if (v == nullptr) bad();
            rep ? r.AddEnum(msg, &field, v) : r.SetEnum(msg, &field, v);
            break;
        }
        case FieldDescriptor::CPPTYPE_STRING: {
            rep ? r.AddString(msg, &field, std::string(text)) : r.SetString(msg, &field, std::string(text));
            break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
            LR_ASSERT(false, "set_value on message field ", field.full_name());
    }
}

// Splits "1000, 750,500" (optionally in brackets) into trimmed elements.
std::vector<std::string_view> split_list(std::string_view text) {
    text = trim(text);
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = trim(text.substr(1, text.size() - 2));
    std::vector<std::string_view> parts;
    if (text.empty()) return parts;
    size_t start = 0;
    while (true) {
        const size_t comma = text.find(',', start);
        parts.push_back(
            trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return parts;
}

}  // namespace

namespace config_detail {

std::vector<std::string> field_name_list(const Descriptor& desc) {
    std::vector<std::string> names;
    names.reserve(desc.field_count());
    for (int i = 0; i < desc.field_count(); ++i) names.push_back(desc.field(i)->name());
    return names;
}

std::string field_names(const Descriptor& desc) {
    std::string out;
    for (int i = 0; i < desc.field_count(); ++i) out += (i ? ", " : "") + desc.field(i)->name();
    return out;
}

std::string enum_value_names(const EnumDescriptor& desc) {
    std::string out;
    for (int i = 0; i < desc.value_count(); ++i) out += (i ? ", " : "") + desc.value(i)->name();
    return out;
}

std::string closest_name(std::string_view name, const std::vector<std::string>& candidates) {
    // Levenshtein distance; a typo is at most 2 edits away and less than half the word.
    auto distance = [](std::string_view a, std::string_view b) {
        std::vector<size_t> row(b.size() + 1);
        for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (size_t i = 1; i <= a.size(); ++i) {
            size_t diag = row[0];
            row[0] = i;
            for (size_t j = 1; j <= b.size(); ++j) {
                const size_t up = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diag = up;
            }
        }
        return row[b.size()];
    };
    std::string best;
    size_t best_d = std::numeric_limits<size_t>::max();
    for (const std::string& c : candidates) {
        const size_t d = distance(name, c);
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    return best_d <= 2 && best_d * 2 < name.size() ? best : "";
}

void apply_override(const ConfigOverride& ovr, pb::Config* root, FieldOrigins* origins) {
    const std::string where = str_cat("--set ", ovr.path, "=", ovr.value);
    Message* msg = root;
    std::string prefix;  // path of `msg`, "" at the root
    std::string_view rest = ovr.path;
    while (true) {
        const size_t dot = rest.find('.');
        const std::string_view name = rest.substr(0, dot);
        const Descriptor& desc = *msg->GetDescriptor();
        const FieldDescriptor* field = desc.FindFieldByName(std::string(name));
        if (field == nullptr) {
            const std::string near = closest_name(name, field_name_list(desc));
            LR_FAIL(where, ": unknown field '", name, "'", prefix.empty() ? "" : " in ", prefix,
                    near.empty() ? "" : str_cat(" (did you mean '", near, "'?)"), "; valid fields",
                    prefix.empty() ? "" : " of ", prefix, ": ", field_names(desc));
        }
        const std::string path = prefix.empty() ? std::string(name) : str_cat(prefix, ".", name);
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            LR_CHECK(dot != std::string_view::npos, where, ": '", path,
                     "' is a section, not a value; set one of its fields: ", field_names(*field->message_type()),
                     " (e.g. --set ", path, ".", field->message_type()->field(0)->name(), "=...)");
            msg = msg->GetReflection()->MutableMessage(msg, field);
            prefix = path;
            rest = rest.substr(dot + 1);
            continue;
        }
        LR_CHECK(dot == std::string_view::npos, where, ": '", path,
                 "' is a value, not a section; nothing can follow it");

        if (path == "monitoring.port") {
            // `--metrics-port off` and `--set monitoring.port=off` switch metrics off; a port switches them on.
            const FieldDescriptor* enabled = msg->GetDescriptor()->FindFieldByName("enabled");
            LR_ASSERT(enabled != nullptr);
            const bool off = upper_snake(trim(ovr.value)) == "OFF";
            msg->GetReflection()->SetBool(msg, enabled, !off);
            origins->set_override("monitoring.enabled", ovr);
            if (off) return;
        }

        if (field->is_repeated()) {
            const std::vector<std::string_view> parts = split_list(ovr.value);
            LR_CHECK(!parts.empty(), where, ": expected a comma-separated list of ", type_label(*field),
                     field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM ? " " + enum_value_names(*field->enum_type())
                                                                        : std::string(),
                     ", found an empty value");
            msg->GetReflection()->ClearField(msg, field);
            for (std::string_view part : parts) set_value(*field, part, msg, where);
        } else {
            const std::string_view value =
                field->cpp_type() == FieldDescriptor::CPPTYPE_STRING ? std::string_view(ovr.value) : trim(ovr.value);
            set_value(*field, value, msg, where);
        }
        origins->set_override(path, ovr);
        return;
    }
}

}  // namespace config_detail

ConfigOverride parse_override(std::string_view arg) {
    const size_t eq = arg.find('=');
    LR_CHECK(eq != std::string_view::npos, "--set ", arg,
             ": expected path=value, e.g. --set rollout.local_attn_size=12, found no '='");
    const std::string_view path = trim(arg.substr(0, eq));
    LR_CHECK(!path.empty(), "--set ", arg,
             ": expected path=value, e.g. --set rollout.local_attn_size=12, found an "
             "empty path");
    return {std::string(path), std::string(arg.substr(eq + 1))};
}

}  // namespace lr
