// A small strict JSON parser (RFC 8259) for safetensors headers, shard index files and the model config
// that checkpoints carry in their metadata. Strict on purpose: these files come from other programs and
// other people, so anything RFC 8259 does not allow is an error with the byte offset where it was found.
//
// Limits that keep hostile input from exhausting the stack or memory: nesting depth <= kMaxDepth, at most
// kMaxValues values per document. Numbers keep their text, so 64-bit integers (safetensors offsets) are
// exact and never pass through a double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace lr::json {

inline constexpr int kMaxDepth = 64;
inline constexpr size_t kMaxValues = size_t{1} << 22;

enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

// "null", "bool", "number", "string", "array", "object": for messages.
std::string_view type_name(Type type);

class Value {
  public:
    using Array = std::vector<Value>;
    using Object = std::vector<std::pair<std::string, Value>>;  // document order, keys unique

    Value() = default;  // null

    Type type() const { return static_cast<Type>(v_.index()); }
    bool is_null() const { return type() == Type::kNull; }
    bool is_bool() const { return type() == Type::kBool; }
    bool is_number() const { return type() == Type::kNumber; }
    bool is_string() const { return type() == Type::kString; }
    bool is_array() const { return type() == Type::kArray; }
    bool is_object() const { return type() == Type::kObject; }

    // The accessors throw InputError ("expected a JSON string, found a number") on the wrong type.
    bool as_bool() const;
    double as_number() const;  // nearest double
    const std::string& as_string() const;
    const Array& as_array() const;
    const Object& as_object() const;

    // Objects only (nullptr for any other type or a missing key).
    const Value* find(std::string_view key) const;

    // A number written without fraction or exponent ("-12", not "12.0" or "1e3").
    bool is_integer() const;
    // The exact value of an integer token, or nullopt when this is not an integer in range.
    std::optional<int64_t> get_int64() const;
    std::optional<uint64_t> get_uint64() const;
    // As get_*, but throw InputError when the value is not an integer in range.
    int64_t as_int64() const;
    uint64_t as_uint64() const;
    // The number exactly as written in the document.
    const std::string& number_text() const;

  private:
    friend class Parser;
    struct Number {
        std::string text;
    };
    std::variant<std::monostate, bool, Number, std::string, Array, Object> v_;
};

// Parses one JSON document (surrounding whitespace allowed, nothing else). Throws InputError
// "<where>: invalid JSON at byte N: <reason>" with N the 0-based offset into `text`.
Value parse(std::string_view text, std::string_view where);

// A JSON string literal for `s` (quotes included): escapes '"', '\\' and control characters; other
// bytes are copied, so valid UTF-8 in gives valid UTF-8 out.
std::string quote(std::string_view s);

// quote(s) with at most max_bytes between the quotes (cut at a UTF-8 boundary, "..." appended): names from hostile
// files in error messages, where they must neither flood the terminal nor carry control characters.
std::string quote_for_message(std::string_view s, size_t max_bytes = 200);

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace lr::json
