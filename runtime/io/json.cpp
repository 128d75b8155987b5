#include "runtime/io/json.h"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <numeric>

#include "runtime/core/check.h"

namespace lr::json {

std::string_view type_name(Type type) {
    switch (type) {
        case Type::kNull:
            return "null";
        case Type::kBool:
            return "bool";
        case Type::kNumber:
            return "number";
        case Type::kString:
            return "string";
        case Type::kArray:
            return "array";
        case Type::kObject:
            return "object";
    }
    return "?";
}

namespace {

// Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7), or 0 if it is not one.
size_t utf8_sequence_length(const unsigned char* p, size_t avail) {
    const unsigned char c = p[0];
    if (c < 0x80) return 1;
    auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xbf) {
        return i < avail && p[i] >= lo && p[i] <= hi;
    };
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;  // no overlongs
    if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) return cont(1) && cont(2) ? 3 : 0;
    if (c == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;       // no surrogates
    if (c == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;  // no overlongs
    if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
    if (c == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;  // <= U+10FFFF
    return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "'x'" for a printable byte, "byte 0x01" otherwise: the offending input may be binary.
std::string describe_byte(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return str_cat("'", c, "'");
    static constexpr char kHex[] = "0123456789abcdef";
    return str_cat("byte 0x", kHex[u >> 4], kHex[u & 15]);
}

}  // namespace

// Recursive descent; recursion is bounded by kMaxDepth. Array elements and object members are collected
// on scratch stacks shared by the whole document and moved into exactly sized vectors when their
// container closes, so memory stays proportional to the document.
class Parser {
  public:
    Parser(std::string_view text, std::string_view where) : text_(text), where_(where) {}

    Value parse_document() {
        Value v = parse_value(0);
        skip_ws();
        if (pos_ != text_.size())
            fail(pos_, str_cat("trailing characters after the JSON value (", describe_byte(text_[pos_]), ")"));
        return v;
    }

  private:
    [[noreturn]] void fail(size_t pos, const std::string& reason) const {
        LR_FAIL(where_, ": invalid JSON at byte ", pos, ": ", reason);
    }

    bool at_end() const { return pos_ >= text_.size(); }
    char peek() const { return text_[pos_]; }

    void skip_ws() {
        while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
    }

    void expect(char c, const char* what) {
        skip_ws();
        if (at_end()) fail(pos_, str_cat("unexpected end of input, expected ", what));
        if (peek() != c) fail(pos_, str_cat("expected ", what, ", found ", describe_byte(peek())));
        ++pos_;
    }

    Value parse_value(int depth) {
        skip_ws();
        if (at_end()) fail(pos_, "unexpected end of input, expected a value");
        if (++values_ > kMaxValues) fail(pos_, str_cat("more than ", kMaxValues, " values in one document"));
        Value v;
        const char c = peek();
        if (c == '{' || c == '[') {
            if (depth >= kMaxDepth) fail(pos_, str_cat("nesting deeper than ", kMaxDepth, " levels"));
            if (c == '{') {
                v.v_ = parse_object(depth + 1);
            } else {
                v.v_ = parse_array(depth + 1);
            }
        } else if (c == '"') {
            std::string s;
            parse_string(s);
            v.v_ = std::move(s);
        } else if (c == '-' || is_digit(c)) {
            v.v_ = Value::Number{parse_number()};
        } else if (c == 't') {
            parse_literal("true");
            v.v_ = true;
        } else if (c == 'f') {
            parse_literal("false");
            v.v_ = false;
        } else if (c == 'n') {
            parse_literal("null");
        } else {
            fail(pos_, str_cat("unexpected ", describe_byte(c), ", expected a value"));
        }
        return v;
    }

    void parse_literal(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) fail(pos_, str_cat("invalid literal, expected '", word, "'"));
        pos_ += word.size();
    }

    std::string parse_number() {
        const size_t start = pos_;
        auto digits = [&] {
            const size_t from = pos_;
            while (!at_end() && is_digit(peek())) ++pos_;
            return pos_ - from;
        };
        if (peek() == '-') ++pos_;
        if (at_end() || !is_digit(peek())) fail(pos_, "expected a digit in number");
        if (peek() == '0') {
            ++pos_;
            if (!at_end() && is_digit(peek())) fail(start, "leading zeros are not allowed in numbers");
        } else {
            digits();
        }
        if (!at_end() && peek() == '.') {
            ++pos_;
            if (digits() == 0) fail(pos_, "expected a digit after the decimal point");
        }
        if (!at_end() && (peek() == 'e' || peek() == 'E')) {
            ++pos_;
            if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
            if (digits() == 0) fail(pos_, "expected a digit in the exponent");
        }
        return std::string(text_.substr(start, pos_ - start));
    }

    uint32_t parse_hex4() {
        if (text_.size() - pos_ < 4) fail(pos_, "truncated \\u escape");
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            const int d = hex_digit(text_[pos_ + static_cast<size_t>(i)]);
            if (d < 0) fail(pos_ + static_cast<size_t>(i), "invalid hex digit in \\u escape");
            v = v * 16 + static_cast<uint32_t>(d);
        }
        pos_ += 4;
        return v;
    }

    // pos_ is at the opening quote.
    void parse_string(std::string& out) {
        const size_t open = pos_++;
        const auto* bytes = reinterpret_cast<const unsigned char*>(text_.data());
        while (true) {
            const size_t run = pos_;
            while (!at_end() && bytes[pos_] >= 0x20 && bytes[pos_] < 0x80 && peek() != '"' && peek() != '\\') ++pos_;
            out.append(text_.substr(run, pos_ - run));
            if (at_end()) fail(open, "unterminated string");
            const unsigned char c = bytes[pos_];
            if (c == '"') {
                ++pos_;
                return;
            }
            if (c < 0x20) fail(pos_, "unescaped control character in string");
            if (c >= 0x80) {
                const size_t n = utf8_sequence_length(bytes + pos_, text_.size() - pos_);
                if (n == 0) fail(pos_, "invalid UTF-8 in string");
                out.append(text_.substr(pos_, n));
                pos_ += n;
                continue;
            }
            // A backslash escape.
            const size_t esc = pos_++;
            if (at_end()) fail(open, "unterminated string");
            const char e = text_[pos_++];
            switch (e) {
                case '"':
                    out += '"';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '/':
                    out += '/';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'u': {
                    uint32_t cp = parse_hex4();
                    if (cp >= 0xdc00 && cp <= 0xdfff) fail(esc, "lone low surrogate in \\u escape");
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (text_.substr(pos_, 2) != "\\u") fail(esc, "high surrogate not followed by a low surrogate");
                        pos_ += 2;
                        const uint32_t lo = parse_hex4();
                        if (lo < 0xdc00 || lo > 0xdfff) fail(esc, "high surrogate not followed by a low surrogate");
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    fail(esc, str_cat("invalid escape sequence: backslash followed by ", describe_byte(e)));
            }
        }
    }

    Value::Array parse_array(int depth) {
        ++pos_;  // '['
        const size_t base = items_.size();
        skip_ws();
        if (!at_end() && peek() == ']') {
            ++pos_;
            return {};
        }
        while (true) {
            items_.push_back(parse_value(depth));
            skip_ws();
            if (at_end()) fail(pos_, "unexpected end of input in array, expected ',' or ']'");
            const char c = text_[pos_++];
            if (c == ']') break;
            if (c != ',') fail(pos_ - 1, str_cat("expected ',' or ']' in array, found ", describe_byte(c)));
        }
        const auto first = items_.begin() + static_cast<std::ptrdiff_t>(base);
        Value::Array out(std::make_move_iterator(first), std::make_move_iterator(items_.end()));
        items_.erase(first, items_.end());
        return out;
    }

    Value::Object parse_object(int depth) {
        ++pos_;  // '{'
        const size_t base = members_.size();
        skip_ws();
        if (!at_end() && peek() == '}') {
            ++pos_;
            return {};
        }
        while (true) {
            skip_ws();
            if (at_end()) fail(pos_, "unexpected end of input, expected a string key");
            if (peek() != '"') fail(pos_, str_cat("expected a string key, found ", describe_byte(peek())));
            const size_t key_pos = pos_;
            std::string key;
            parse_string(key);
            expect(':', "':' after an object key");
            Value v = parse_value(depth);
            // Pushed together, after the value: a nested object pushes and pops its own members meanwhile.
            members_.emplace_back(std::move(key), std::move(v));
            key_positions_.push_back(key_pos);
            skip_ws();
            if (at_end()) fail(pos_, "unexpected end of input in object, expected ',' or '}'");
            const char c = text_[pos_++];
            if (c == '}') break;
            if (c != ',') fail(pos_ - 1, str_cat("expected ',' or '}' in object, found ", describe_byte(c)));
        }
        check_unique_keys(base);
        const auto first = members_.begin() + static_cast<std::ptrdiff_t>(base);
        Value::Object out(std::make_move_iterator(first), std::make_move_iterator(members_.end()));
        members_.erase(first, members_.end());
        key_positions_.resize(base);
        return out;
    }

    // Members [base, end) of the scratch stack; O(n log n) so that a huge object cannot stall the parser.
    void check_unique_keys(size_t base) {
        LR_ASSERT(key_positions_.size() == members_.size(), "JSON parser key positions out of step");
        const size_t n = members_.size() - base;
        if (n < 2) return;
        std::vector<size_t> order(n);
        std::iota(order.begin(), order.end(), base);
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
            const int c = members_[a].first.compare(members_[b].first);
            return c != 0 ? c < 0 : a < b;
        });
        for (size_t i = 1; i < n; ++i) {
            if (members_[order[i - 1]].first == members_[order[i]].first) {
                fail(key_positions_[order[i]], str_cat("duplicate key ", quote(members_[order[i]].first)));
            }
        }
    }

    std::string_view text_;
    std::string_view where_;
    size_t pos_ = 0;
    size_t values_ = 0;
    std::vector<Value> items_;
    std::vector<std::pair<std::string, Value>> members_;
    std::vector<size_t> key_positions_;  // parallel to members_
};

// ---- Value -----------------------------------------------------------------------------------------

namespace {
[[noreturn]] void wrong_type(Type expected, Type found) {
    LR_FAIL("expected a JSON ", type_name(expected), ", found a ", type_name(found));
}
}  // namespace

bool Value::as_bool() const {
    if (const auto* b = std::get_if<bool>(&v_)) return *b;
    wrong_type(Type::kBool, type());
}

double Value::as_number() const {
    const std::string& t = number_text();
    double d = 0;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), d);
    LR_CHECK(r.ec == std::errc() && r.ptr == t.data() + t.size(), "JSON number ", t,
             " is out of the range of a double");
    return d;
}

const std::string& Value::as_string() const {
    if (const auto* s = std::get_if<std::string>(&v_)) return *s;
    wrong_type(Type::kString, type());
}

const Value::Array& Value::as_array() const {
    if (const auto* a = std::get_if<Array>(&v_)) return *a;
    wrong_type(Type::kArray, type());
}

const Value::Object& Value::as_object() const {
    if (const auto* o = std::get_if<Object>(&v_)) return *o;
    wrong_type(Type::kObject, type());
}

const std::string& Value::number_text() const {
    if (const auto* n = std::get_if<Number>(&v_)) return n->text;
    wrong_type(Type::kNumber, type());
}

const Value* Value::find(std::string_view key) const {
    const auto* o = std::get_if<Object>(&v_);
    if (!o) return nullptr;
    for (const auto& [k, v] : *o) {
        if (k == key) return &v;
    }
    return nullptr;
}

bool Value::is_integer() const {
    const auto* n = std::get_if<Number>(&v_);
    return n && n->text.find_first_of(".eE") == std::string::npos;
}

std::optional<int64_t> Value::get_int64() const {
    if (!is_integer()) return std::nullopt;
    const std::string& t = std::get<Number>(v_).text;
    int64_t v = 0;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size()) return std::nullopt;
    return v;
}

std::optional<uint64_t> Value::get_uint64() const {
    if (!is_integer()) return std::nullopt;
    const std::string& t = std::get<Number>(v_).text;
    if (t == "-0") return 0;
    uint64_t v = 0;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size()) return std::nullopt;
    return v;
}

int64_t Value::as_int64() const {
    const auto v = get_int64();
    LR_CHECK(v.has_value(), "expected an integer in the int64 range, found ",
             is_number() ? number_text() : str_cat("a ", type_name(type())));
    return *v;
}

uint64_t Value::as_uint64() const {
    const auto v = get_uint64();
    LR_CHECK(v.has_value(), "expected a non-negative integer in the uint64 range, found ",
             is_number() ? number_text() : str_cat("a ", type_name(type())));
    return *v;
}

// ---- Free functions --------------------------------------------------------------------------------

Value parse(std::string_view text, std::string_view where) { return Parser(text, where).parse_document(); }

std::string quote(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (u < 0x20) {
                    out += "\\u00";
                    out += kHex[u >> 4];
                    out += kHex[u & 15];
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    return out;
}

std::string quote_for_message(std::string_view s, size_t max_bytes) {
    // Cut where the escaped text would pass max_bytes, backing off to the start of a UTF-8 sequence.
    size_t escaped = 0;
    size_t cut = 0;
    while (cut < s.size()) {
        const auto u = static_cast<unsigned char>(s[cut]);
        const size_t w = (u == '"' || u == '\\') ? 2 : (u < 0x20 ? 6 : 1);
        if (escaped + w > max_bytes) break;
        escaped += w;
        ++cut;
    }
    if (cut == s.size()) return quote(s);
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
    return quote(s.substr(0, cut)) + "...";
}

bool is_valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t i = 0;
    while (i < s.size()) {
        const size_t n = utf8_sequence_length(p + i, s.size() - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

}  // namespace lr::json
